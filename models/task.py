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

from trainlab.models.losses import l1_norm

DEFAULT_OPTIMIZER = {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3}}


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
        """Epoch-level logging, reduced across DDP ranks; the MLflow logger writes it with the epoch as step."""
        self.log(name, value, on_step=False, on_epoch=True, sync_dist=True, batch_size=batch_size)

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
