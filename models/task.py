"""The task half of every trainlab model: optimisation wiring shared by all task types.

Nets (``models.nets``) know nothing of losses or optimisers; tasks (this module and its subclasses) own
the loss, the torchmetrics metrics and the optimiser/scheduler built from the experiment file's top-level
``optimizer`` and ``lr_scheduler`` sections.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import instantiate_class

DEFAULT_OPTIMIZER = {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3}}


class TrainlabTask(L.LightningModule):
    """Base LightningModule: builds the optimiser and scheduler from config dicts set by the run builder.

    ``monitor``/``monitor_mode`` name the metric that checkpointing, early stopping, ReduceLROnPlateau
    and Optuna pruning watch unless the experiment file says otherwise.
    """

    monitor: str = "val/loss"
    monitor_mode: str = "min"
    # What kind of predictions the task makes; diagnostics pick their pictures by it
    # ("classification", "regression", "forecasting", "segmentation").
    task_type: str = "generic"

    def __init__(self) -> None:
        super().__init__()
        self.optimizer_config: dict[str, Any] = DEFAULT_OPTIMIZER
        self.lr_scheduler_config: dict[str, Any] | None = None

    def set_optimization(self, optimizer: dict[str, Any] | None, lr_scheduler: dict[str, Any] | None) -> None:
        self.optimizer_config = optimizer or DEFAULT_OPTIMIZER
        self.lr_scheduler_config = lr_scheduler

    def configure_optimizers(self) -> Any:
        optimizer = instantiate_class(self.parameters(), self.optimizer_config)
        if not self.lr_scheduler_config:
            return optimizer
        scheduler = instantiate_class(optimizer, self.lr_scheduler_config)
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            # Lightning's own ReduceLROnPlateau subclass carries a monitor; torch's does not.
            monitor = getattr(scheduler, "monitor", None) or self.monitor
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": monitor}}
        interval = "step" if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR) else "epoch"
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}

    def log_epoch_metric(self, name: str, value: Any, batch_size: int) -> None:
        """Epoch-level logging, reduced across DDP ranks; the MLflow logger writes it with the epoch as step."""
        self.log(name, value, on_step=False, on_epoch=True, sync_dist=True, batch_size=batch_size)
