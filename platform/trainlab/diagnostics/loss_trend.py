"""Warnings that the learning rate is too high: a training loss that diverges or oscillates from epoch to epoch."""

from __future__ import annotations

import math

import lightning as L
from lightning.pytorch.callbacks import Callback

from trainlab.diagnostics._tracking import append_note, set_tags
from trainlab.diagnostics.non_finite import NonFiniteError

WARNING_TAG = "trainlab.warning"

_CURES = (
    "The learning rate is probably too high: lower optimizer.init_args.lr, add a schedule (lr_scheduler, e.g. "
    "ReduceLROnPlateau) or clip gradients (trainer.gradient_clip_val)."
)


def loss_trend_warning(
    losses: list[float],
    diverging_rise: float = 0.5,
    oscillation_swing: float = 0.05,
    oscillation_fraction: float = 0.3,
    min_epochs: int = 4,
) -> str | None:
    """``"diverging"``, ``"oscillating"`` or None for a run's per-epoch training losses.

    Diverging: a loss is not finite, or the last one is more than ``diverging_rise`` (a fraction) above the
    lowest earlier one. Oscillating: with at least ``min_epochs`` epochs, a share of at least
    ``oscillation_fraction`` of the epoch-to-epoch changes are rises of more than ``oscillation_swing`` (a
    fraction of the previous loss).
    """
    if any(not math.isfinite(loss) for loss in losses):
        return "diverging"
    if len(losses) >= 2:
        lowest = min(losses[:-1])
        if losses[-1] - lowest > diverging_rise * abs(lowest):
            return "diverging"
    if len(losses) >= max(min_epochs, 2):
        pairs = list(zip(losses, losses[1:]))
        rises = sum(after - before > oscillation_swing * abs(before) for before, after in pairs)
        if rises / len(pairs) >= oscillation_fraction:
            return "oscillating"
    return None


class LossTrendMonitor(Callback):
    """Tags a run ``trainlab.warning=diverging|oscillating`` when its training loss says the learning rate is too high.

    Reads ``train/loss`` at the end of every epoch; at the end of the run applies :func:`loss_trend_warning`
    and, on a warning, adds the learning rate in use and the usual remedies to the run description. A run
    stopped by :class:`~trainlab.diagnostics.non_finite.NonFiniteGuard` counts as diverging. The learning
    rate and momentum curves themselves (``optim/lr``, ``optim/momentum``) are drawn with the losses in
    ``plots/learning_curves.png``.

    Example::

        trainer = Trainer(callbacks=[LossTrendMonitor(diverging_rise=0.5)])
        # Adam with lr=0.5 -> tag trainlab.warning=diverging
    """

    def __init__(
        self,
        diverging_rise: float = 0.5,
        oscillation_swing: float = 0.05,
        oscillation_fraction: float = 0.3,
        min_epochs: int = 4,
        loss_key: str = "train/loss",
    ) -> None:
        self.diverging_rise = diverging_rise
        self.oscillation_swing = oscillation_swing
        self.oscillation_fraction = oscillation_fraction
        self.min_epochs = min_epochs
        self.loss_key = loss_key
        self.losses: list[float] = []
        self.warning: str | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.loss_key in trainer.callback_metrics:
            self.losses.append(float(trainer.callback_metrics[self.loss_key]))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._report(trainer, non_finite=isinstance(exception, NonFiniteError))

    def _report(self, trainer: L.Trainer, non_finite: bool = False) -> None:
        self.warning = "diverging" if non_finite else loss_trend_warning(
            self.losses, self.diverging_rise, self.oscillation_swing, self.oscillation_fraction, self.min_epochs
        )
        if self.warning is None:
            return
        set_tags(trainer, {WARNING_TAG: self.warning})
        curve = ", ".join(f"{loss:.4g}" for loss in self.losses[-8:]) or "no complete epoch"
        rates = sorted({group["lr"] for optimizer in trainer.optimizers for group in optimizer.param_groups})
        rate = ", ".join(f"{lr:g}" for lr in rates)
        what = "became non-finite" if non_finite else f"is {self.warning} (last epochs: {curve})"
        append_note(trainer, f"Warning: training loss {what} with learning rate {rate}. {_CURES}")
