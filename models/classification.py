"""Classification task: cross-entropy (optionally label-smoothed) or BCE; accuracy and macro F1 from one confusion matrix.

The test set's confusion matrix is drawn by the diagnostics (``trainlab.diagnostics.ConfusionMatrixReport``,
on for every task whose ``task_type`` is "classification"), also with torchmetrics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassConfusionMatrix

from trainlab.models.losses import ClassificationLoss
from trainlab.models.task import TrainlabTask
from trainlab.errors import ConfigError


class ClassificationTask(TrainlabTask):
    """Subclasses build ``self.net`` with :attr:`net_outputs` outputs and call ``super().__init__``.

    Batches are ``(x, y)`` or, for variable-length sequences, ``(x, lengths, y)``: everything before the
    labels ``y`` goes to ``forward``. ``forward`` always returns ``num_classes`` logits, also with
    ``loss: bce`` (then the net has one output ``z`` and the logits are ``[0, z]``, whose softmax is
    ``[1 - sigmoid(z), sigmoid(z)]``), so argmax and softmax work the same for every loss.

    Metric state lives in torchmetrics objects, so accuracy and F1 are exact under DDP.
    """

    monitor = "val/acc"
    monitor_mode = "max"
    task_type = "classification"

    def __init__(
        self,
        num_classes: int,
        loss: ClassificationLoss = "cross_entropy",
        label_smoothing: float = 0.0,
        l1_penalty: float = 0.0,
    ) -> None:
        super().__init__(l1_penalty=l1_penalty)
        if loss == "bce" and num_classes != 2:
            raise ConfigError("model.init_args.loss", loss, f"cross_entropy for {num_classes} classes (bce is for two)")
        self.num_classes = num_classes
        self.loss_name = loss
        self.label_smoothing = label_smoothing
        metrics = MetricCollection({"counts": AccuracyAndF1(num_classes)}, compute_groups=False)
        # Keys get a suffix: a ModuleDict key "train" would clash with nn.Module.train().
        self.metrics = nn.ModuleDict({f"{stage}_metrics": metrics.clone(prefix=f"{stage}/") for stage in ("train", "val", "test")})

    net: nn.Module

    @property
    def net_outputs(self) -> int:
        return 1 if self.loss_name == "bce" else self.num_classes

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = self.net(*inputs)
        if self.loss_name == "bce":
            return torch.cat([torch.zeros_like(out), out], dim=1)
        return out

    def loss(self, logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
        if self.loss_name == "bce":
            target = y.to(logits.dtype) * (1 - smoothing) + 0.5 * smoothing
            return F.binary_cross_entropy_with_logits(logits[:, 1], target)
        return F.cross_entropy(logits, y, label_smoothing=smoothing)

    def shared_step(self, batch: tuple[torch.Tensor, ...], stage: str) -> torch.Tensor:
        *inputs, y = batch
        logits = self(*inputs)
        loss = self.loss(logits, y, self.label_smoothing if stage == "train" else 0.0)
        metrics = self.metrics[f"{stage}_metrics"]
        metrics.update(logits.detach(), y)
        self.log_epoch_metric(f"{stage}/loss", loss.detach(), batch_size=len(y))
        return loss


class AccuracyAndF1(MulticlassConfusionMatrix):
    """Micro accuracy and macro F1 (torchmetrics' ``MulticlassAccuracy``/``MulticlassF1Score`` values) from one
    confusion matrix: one bincount per step instead of two stat-score updates, a fifth of their cost, which
    for a small net is a quarter of a training step (benchmarks/overhead.py). The matrix is summed over DDP
    ranks by torchmetrics, so both stay exact. Labels out of range are refused by the loss before this runs.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes, validate_args=False)

    def compute(self) -> dict[str, torch.Tensor]:
        matrix = self.confmat.to(torch.float64)  # rows: true class, columns: predicted
        true_positives = matrix.diagonal()
        support, predicted = matrix.sum(1), matrix.sum(0)
        accuracy = true_positives.sum() / matrix.sum()
        # torchmetrics' macro F1: 2TP / (2TP + FP + FN) per class, 0 where undefined, averaged over the
        # classes that occur in the labels or the predictions.
        denominator = support + predicted
        f1 = torch.where(denominator > 0, 2 * true_positives / denominator.clamp(min=1), torch.zeros_like(denominator))
        present = denominator > 0
        macro_f1 = f1[present].mean() if present.any() else torch.zeros(())
        return {"acc": accuracy.float(), "f1": macro_f1.float()}
