"""The task half of every trainlab model: the training loop's shape and optimisation wiring shared by all tasks.

Nets (``models.nets``) know nothing of losses or optimisers; tasks (this module and its subclasses) own
the loss, the torchmetrics metrics and the optimiser/scheduler built from the experiment file's top-level
``optimizer`` and ``lr_scheduler`` sections.
"""

from __future__ import annotations

import copy
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import instantiate_class
from torchmetrics import Metric

from trainlab.models.losses import l1_norm

DEFAULT_OPTIMIZER = {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3}}


class EpochMean(Metric):
    """Mean of per-step values weighted by batch size, summed over DDP ranks by torchmetrics.

    torchmetrics' ``MeanMetric`` checks every update for NaN (a host sync per step), and its
    ``nan_strategy="disable"`` drops the weights (torchmetrics 1.9); the weighted sum is two lines.
    A NaN loss makes the epoch mean NaN, as Lightning's own epoch means do.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("weight", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, value: torch.Tensor, weight: int) -> None:
        # In place: ``+=`` on a module attribute also runs nn.Module.__setattr__, slower than the addition.
        self.total.add_(torch.as_tensor(value, device=self.total.device).to(self.total.dtype) * weight)
        self.weight.add_(weight)

    def compute(self) -> torch.Tensor:
        return self.total / self.weight


class TrainlabTask(L.LightningModule):
    """Base LightningModule: builds the optimiser and scheduler from config dicts set by the run builder.

    Subclasses implement ``shared_step(batch, stage) -> loss``: it computes the data loss, updates the
    stage's torchmetrics collection ``self.metrics[f"{stage}_metrics"]`` (logged and reset at the end of
    each epoch) and logs ``{stage}/loss``. The training step adds the L1 weight penalty
    (``l1_penalty`` × Σ|w| over the net's weight matrices) to what is minimised and logs it as
    ``train/l1_penalty``; ``train/loss`` stays the data loss, comparable with ``val/loss``.

    ``monitor``/``monitor_mode`` name the metric that checkpointing, early stopping, ReduceLROnPlateau
    and Optuna pruning watch unless the experiment file says otherwise.
    """

    monitor: str = "val/loss"
    monitor_mode: str = "min"
    # What kind of predictions the task makes; diagnostics pick their pictures by it
    # ("classification", "regression", "forecasting", "segmentation").
    task_type: str = "generic"

    def __init__(self, l1_penalty: float = 0.0) -> None:
        super().__init__()
        if l1_penalty < 0:
            raise ValueError(f"l1_penalty must be >= 0, got {l1_penalty}")
        self.l1_penalty = l1_penalty
        self.optimizer_config: dict[str, Any] = DEFAULT_OPTIMIZER
        self.lr_scheduler_config: dict[str, Any] | None = None
        # log_epoch_metric's means, by (stage, name); a plain dict, so they stay out of state_dict and checkpoints.
        self._epoch_means: dict[tuple[str, str], EpochMean] = {}

    # -- the loop ----------------------------------------------------------------------------------
    def shared_step(self, batch: Any, stage: str) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.shared_step(batch, "train")
        if self.l1_penalty > 0:
            penalty = self.l1_penalty * l1_norm(self)
            self.log_epoch_metric("train/l1_penalty", penalty.detach(), batch_size=len(batch[-1]))
            loss = loss + penalty
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.shared_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.shared_step(batch, "test")

    # Lightning resets log_epoch_metric's means at each epoch's end; resetting them at the start too
    # keeps a fit or test that follows an interrupted one from starting with its partial sums.
    def on_train_epoch_start(self) -> None:
        self._reset_epoch_means("train")

    def on_validation_start(self) -> None:
        self._reset_epoch_means("validate")

    def on_test_start(self) -> None:
        self._reset_epoch_means("test")

    def _reset_epoch_means(self, stage: str) -> None:
        for (mean_stage, _), mean in self._epoch_means.items():
            if mean_stage == stage:
                mean.reset()

    # Tasks keep one torchmetrics collection per stage in ``self.metrics[f"{stage}_metrics"]``.
    def on_train_epoch_end(self) -> None:
        self._log_stage_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self._log_stage_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_stage_metrics("test")

    def _log_stage_metrics(self, stage: str) -> None:
        metrics = getattr(self, "metrics", None)
        if isinstance(metrics, torch.nn.ModuleDict) and f"{stage}_metrics" in metrics:
            self.log_metric_collection(metrics[f"{stage}_metrics"])

    # -- optimisation ------------------------------------------------------------------------------
    def set_optimization(self, optimizer: dict[str, Any] | None, lr_scheduler: dict[str, Any] | None) -> None:
        self.optimizer_config = optimizer or DEFAULT_OPTIMIZER
        self.lr_scheduler_config = lr_scheduler

    def configure_optimizers(self) -> Any:
        optimizer = instantiate_class(self.parameters(), self.optimizer_config)
        if not self.lr_scheduler_config:
            return optimizer
        scheduler_config = self._with_total_steps(self.lr_scheduler_config)
        scheduler = instantiate_class(optimizer, scheduler_config)
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            # Lightning's own ReduceLROnPlateau subclass carries a monitor; torch's does not.
            monitor = getattr(scheduler, "monitor", None) or self.monitor
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": monitor}}
        interval = "step" if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR) else "epoch"
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}

    def _with_total_steps(self, config: dict[str, Any]) -> dict[str, Any]:
        """OneCycleLR without ``total_steps`` (or ``epochs``) runs over the whole fit: the trainer knows its length.

        The step count depends on batch size and epochs, which a study may vary; asking the user for it
        would break every trial that changes them.
        """
        init_args = config.get("init_args") or {}
        if not config.get("class_path", "").endswith("OneCycleLR") or init_args.get("total_steps") or init_args.get("epochs"):
            return config
        config = copy.deepcopy(config)
        config.setdefault("init_args", {})["total_steps"] = int(self.trainer.estimated_stepping_batches)
        return config

    def log_epoch_metric(self, name: str, value: Any, batch_size: int) -> None:
        """Log the epoch mean of a per-step value (weighted by ``batch_size``), reduced across DDP ranks.

        Each step only adds to an :class:`EpochMean` on the device. ``self.log`` with a tensor on every step
        moves and accumulates it through Lightning's result collection, about a millisecond a call on a
        CPU (as much as a small net's step; benchmarks/overhead.py). The metric object is handed to
        ``self.log`` once per epoch instead: Lightning computes it when the epoch's values are read
        (callbacks' ``on_<stage>_epoch_end`` see it, as before) and resets it at the epoch's end. The MLflow
        logger writes it with the epoch as step.
        """
        if self._trainer is None:
            return  # outside a Trainer there is no epoch to log to (self.log would only warn)
        # The sanity check is validation: one entry in Lightning's validation results, one mean.
        stage = "validate" if self.trainer.sanity_checking else self.trainer.state.stage.value
        key = (stage, name)
        mean = self._epoch_means.get(key)
        if mean is None:
            device = value.device if isinstance(value, torch.Tensor) else self.device
            mean = self._epoch_means[key] = EpochMean().to(device)
        mean.update(value, batch_size)
        if mean.update_count == 1:  # the epoch's first step: (re-)register with this epoch's results
            # metric_attribute: the means are not submodules, so Lightning cannot look their names up.
            self.log(name, mean, on_step=False, on_epoch=True, metric_attribute=f"_epoch_means[{stage}/{name}]")

    def log_metric_collection(self, metrics: Any) -> None:
        """Log a torchmetrics collection's epoch values and reset it; call it from ``on_<stage>_epoch_end``.

        Steps only ``update`` the metrics: handing metric objects to ``self.log`` on every step makes
        Lightning walk each metric's state per step, which cost more than the step itself for small nets
        (benchmarks/overhead.py). ``compute`` already reduces over DDP ranks, so the values are final.
        Lightning runs callbacks' ``on_<stage>_epoch_end`` before the module's, so callbacks read these
        values from ``on_validation_end`` on (as checkpointing, early stopping and pruning do).
        """
        if not any(metric.update_count for metric in metrics.values()):
            return  # no batches this epoch (e.g. limit_val_batches=0)
        # sync_dist: all ranks hold the same values; averaging them changes nothing and keeps Lightning quiet.
        self.log_dict(metrics.compute(), on_step=False, on_epoch=True, sync_dist=True)
        metrics.reset()
