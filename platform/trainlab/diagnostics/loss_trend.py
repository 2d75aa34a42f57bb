"""Warnings that the learning rate is too high: a training loss that diverges or oscillates from epoch to epoch."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from trainlab.diagnostics._tracking import second_to, set_tags, write_note
from trainlab.diagnostics.non_finite import NonFiniteError

WARNING_TAG = "trainlab.warning"

_CURES = (
    "The learning rate is probably too high: lower optimizer.init_args.lr, add a schedule (lr_scheduler, e.g. "
    "ReduceLROnPlateau) or clip gradients (trainer.gradient_clip_val)."
)


def loss_trend_warning(
    losses: list[float],
    first_step_loss: float | None = None,
    max_step_loss: float | None = None,
    diverging_rise: float = 0.5,
    diverging_step_factor: float = 10.0,
    oscillation_swing: float = 0.1,
    oscillation_fraction: float = 0.3,
    min_epochs: int = 4,
) -> str | None:
    """``"diverging"``, ``"oscillating"`` or None, from per-epoch training losses and the run's step losses.

    Diverging: a loss is not finite; or some step's loss exceeds ``diverging_step_factor`` × the first
    step's (a blow-up that epoch means hide when the net then sticks at chance level); or the last epoch's
    loss is more than ``diverging_rise`` (a fraction) above the first epoch's. Oscillating: with at least
    ``min_epochs`` epochs, a share of at least ``oscillation_fraction`` of the epoch-to-epoch changes are
    rises of more than ``oscillation_swing`` × the largest epoch loss, so the small wobbles of a converged
    run, or of one stuck at chance level, do not count.
    """
    steps = [v for v in (first_step_loss, max_step_loss) if v is not None]
    if any(not math.isfinite(loss) for loss in [*losses, *steps]):
        return "diverging"
    if first_step_loss is not None and max_step_loss is not None and first_step_loss > 0:
        if max_step_loss > diverging_step_factor * first_step_loss:
            return "diverging"
    if len(losses) >= 2 and losses[-1] - losses[0] > diverging_rise * abs(losses[0]):
        return "diverging"
    if len(losses) >= max(min_epochs, 2):
        swing = oscillation_swing * max(abs(loss) for loss in losses)
        pairs = list(zip(losses, losses[1:]))
        rises = sum(after - before > swing for before, after in pairs)
        if swing > 0 and rises / len(pairs) >= oscillation_fraction:
            return "oscillating"
    return None


class LossTrendMonitor(Callback):
    """Tags a run ``trainlab.warning=diverging|oscillating`` when its training loss says the learning rate is too high.

    Reads ``train/loss`` at the end of every epoch and follows the step losses on the device (the first
    one and the largest, no host sync per step). At the end of the run applies :func:`loss_trend_warning`
    and, on a warning, adds the learning rate in use and the usual remedies to the run description. A run
    stopped by :class:`~trainlab.diagnostics.non_finite.NonFiniteGuard` counts as diverging. The learning
    rate and momentum curves themselves (``optim/lr``, ``optim/momentum``) are drawn with the losses in
    ``plots/learning_curves.png``.

    Example::

        trainer = Trainer(callbacks=[LossTrendMonitor(diverging_step_factor=10.0)])
        # Adam with lr=0.3 on digits: a step loss of ~300 after a first one of 2.3 -> trainlab.warning=diverging
    """

    def __init__(
        self,
        diverging_rise: float = 0.5,
        diverging_step_factor: float = 10.0,
        oscillation_swing: float = 0.1,
        oscillation_fraction: float = 0.3,
        min_epochs: int = 4,
        loss_key: str = "train/loss",
    ) -> None:
        self.diverging_rise = diverging_rise
        self.diverging_step_factor = diverging_step_factor
        self.oscillation_swing = oscillation_swing
        self.oscillation_fraction = oscillation_fraction
        self.min_epochs = min_epochs
        self.loss_key = loss_key
        self.losses: list[float] = []
        self.first_step_loss: float | None = None
        self.max_step_loss: float | None = None
        self.warning: str | None = None
        self._first: torch.Tensor | None = None
        self._max: torch.Tensor | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return  # manual optimisation returns nothing
        loss = loss.detach().float()
        if self._first is None:
            self._first, self._max = loss, loss
        else:
            self._max = torch.maximum(self._max, loss)  # NaN propagates, so a NaN step is never lost

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.loss_key in trainer.callback_metrics:
            self.losses.append(float(trainer.callback_metrics[self.loss_key]))
        self._read_steps()

    # Lightning keeps callbacks' state in a resume checkpoint (written at an epoch's start, so the step losses
    # are read already): a resumed run's trend starts at its first epoch, not at the resume.
    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses), "first_step_loss": self.first_step_loss, "max_step_loss": self.max_step_loss}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.losses = list(state_dict["losses"])
        self.first_step_loss, self.max_step_loss = state_dict["first_step_loss"], state_dict["max_step_loss"]
        if self.first_step_loss is not None:  # float32, as the step losses were
            self._first, self._max = torch.tensor(self.first_step_loss), torch.tensor(self.max_step_loss)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        with second_to(exception):
            self._read_steps()
            self._report(trainer, non_finite=isinstance(exception, NonFiniteError))

    def _read_steps(self) -> None:
        if self._first is not None:
            self.first_step_loss, self.max_step_loss = float(self._first), float(self._max)

    def _report(self, trainer: L.Trainer, non_finite: bool = False) -> None:
        self.warning = "diverging" if non_finite else loss_trend_warning(
            self.losses,
            self.first_step_loss,
            self.max_step_loss,
            self.diverging_rise,
            self.diverging_step_factor,
            self.oscillation_swing,
            self.oscillation_fraction,
            self.min_epochs,
        )
        if self.warning is None:
            return
        set_tags(trainer, {WARNING_TAG: self.warning})
        rates = sorted({group["lr"] for optimizer in trainer.optimizers for group in optimizer.param_groups})
        rate = ", ".join(f"{lr:g}" for lr in rates)
        write_note(trainer, "loss_trend", f"Warning: training loss {self._what(non_finite)} with learning rate {rate}. {_CURES}")

    def _what(self, non_finite: bool) -> str:
        if non_finite:
            return "became non-finite"
        curve = ", ".join(f"{loss:.4g}" for loss in self.losses[-8:]) or "no complete epoch"
        steps = f"; step losses: first {self.first_step_loss:.4g}, largest {self.max_step_loss:.4g}" if self.first_step_loss is not None else ""
        return f"is {self.warning} (epoch means, last ones: {curve}{steps})"
