"""Overfitting: the epoch where validation loss bottoms out while training loss keeps falling."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from trainlab.diagnostics._tracking import log_epoch_metrics, second_to, set_tags, write_note

OVERFITTING_TAG = "trainlab.overfitting"

_CURES = (
    "Usual cures: more dropout (model.init_args.dropout), weight decay (optimizer.init_args.weight_decay), "
    "early stopping (an EarlyStopping callback on val/loss in trainer.callbacks), more training data or a smaller model."
)


def find_overfit_epoch(train: dict[int, float], val: dict[int, float], patience: int = 2, min_val_rise: float = 0.05) -> int | None:
    """The epoch of lowest validation loss, if the run overfitted after it; else None.

    Overfitted means: at least ``patience`` epochs came after it, the validation losses after it average
    more than ``min_val_rise`` (a fraction of the lowest value) above it, and the last training loss is
    below the training loss of that epoch. The average, not the last value, so that a validation loss that
    jumps up and settles a little lower still counts, and one noisy epoch does not.
    """
    epochs = sorted(set(train) & set(val))
    if len(epochs) < patience + 1:
        return None
    best = min(epochs, key=lambda e: val[e])
    after = [e for e in epochs if e > best]
    if len(after) < patience:
        return None
    val_rose = sum(val[e] for e in after) / len(after) - val[best] > min_val_rise * abs(val[best])
    train_fell = train[after[-1]] < train[best]
    return best if val_rose and train_fell else None


class OverfittingDetector(Callback):
    """Finds the epoch where validation loss bottomed out while training loss kept falling.

    Every epoch it logs ``loss_gap`` (validation minus training loss). At the end of the run it sets the tag
    ``trainlab.overfitting`` (true/false); when the run overfitted (rule: :func:`find_overfit_epoch`) it
    logs ``overfit_epoch`` and ``overfit_gap`` (the gap at the last epoch), which the learning-curves plot
    marks, and adds the usual cures to the run description.

    Example::

        trainer = Trainer(callbacks=[OverfittingDetector(patience=2, min_val_rise=0.05)])
        # big net, tiny training split -> overfit_epoch=4, trainlab.overfitting=true
    """

    def __init__(self, patience: int = 2, min_val_rise: float = 0.05, train_key: str = "train/loss", val_key: str = "val/loss") -> None:
        self.patience = patience
        self.min_val_rise = min_val_rise
        self.train_key = train_key
        self.val_key = val_key
        self.train_losses: dict[int, float] = {}
        self.val_losses: dict[int, float] = {}
        self.overfit_epoch: int | None = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and self.val_key in trainer.callback_metrics:
            self.val_losses[trainer.current_epoch] = float(trainer.callback_metrics[self.val_key])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        if self.train_key not in trainer.callback_metrics:
            return
        self.train_losses[epoch] = float(trainer.callback_metrics[self.train_key])
        if epoch in self.val_losses:
            log_epoch_metrics(trainer, {"loss_gap": self.val_losses[epoch] - self.train_losses[epoch]})

    # Lightning keeps callbacks' state in a resume checkpoint: a resumed run is judged on all its epochs.
    def state_dict(self) -> dict[str, Any]:
        return {"train_losses": dict(self.train_losses), "val_losses": dict(self.val_losses)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_losses, self.val_losses = dict(state_dict["train_losses"]), dict(state_dict["val_losses"])

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        with second_to(exception):
            self._report(trainer)  # a pruned trial may well have been overfitting

    def _report(self, trainer: L.Trainer) -> None:
        self.overfit_epoch = find_overfit_epoch(self.train_losses, self.val_losses, self.patience, self.min_val_rise)
        epochs = sorted(set(self.train_losses) & set(self.val_losses))
        if not epochs:
            return
        set_tags(trainer, {OVERFITTING_TAG: str(self.overfit_epoch is not None).lower()})
        if self.overfit_epoch is None:
            return
        best, last = self.overfit_epoch, epochs[-1]
        gap = self.val_losses[last] - self.train_losses[last]
        log_epoch_metrics(trainer, {"overfit_epoch": best, "overfit_gap": gap})
        write_note(
            trainer,
            "overfitting",
            f"Overfitting from epoch {best}: validation loss bottomed out at {self.val_losses[best]:.4g} and rose to "
            f"{self.val_losses[last]:.4g} by epoch {last}, while training loss kept falling to {self.train_losses[last]:.4g} "
            f"(val − train gap {gap:.4g}). {_CURES}",
        )
