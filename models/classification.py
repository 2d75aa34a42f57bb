"""Classification task: cross-entropy (optionally label-smoothed), accuracy and macro F1 via torchmetrics."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from models.task import TrainlabTask


class ClassificationTask(TrainlabTask):
    """Subclasses build ``self.net`` (logits out) and call ``super().__init__``.

    Metric state lives in torchmetrics objects, so accuracy and F1 are exact under DDP.
    """

    monitor = "val/acc"
    monitor_mode = "max"
    task_type = "classification"

    def __init__(self, num_classes: int, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                "f1": MulticlassF1Score(num_classes, average="macro"),
            }
        )
        # Keys get a suffix: a ModuleDict key "train" would clash with nn.Module.train().
        self.metrics = nn.ModuleDict({f"{stage}_metrics": metrics.clone(prefix=f"{stage}/") for stage in ("train", "val", "test")})

    net: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing if stage == "train" else 0.0)
        metrics = self.metrics[f"{stage}_metrics"]
        metrics.update(logits.detach(), y)
        self.log_epoch_metric(f"{stage}/loss", loss.detach(), batch_size=len(y))
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def training_step(self, batch, batch_idx):
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._shared_step(batch, "test")
