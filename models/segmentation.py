"""Segmentation task (BCE, Dice or BCE+Dice loss; Dice and IoU via torchmetrics) and UNetSegmenter."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassJaccardIndex
from torchmetrics.segmentation import DiceScore

from trainlab.models.losses import SegmentationLoss, segmentation_loss
from trainlab.models.nets.layers import Activation, Init
from trainlab.models.nets.unet import UNet
from trainlab.models.task import TrainlabTask
from trainlab.types import NonNegativeFloat, PositiveInt, UnitFraction


class ForegroundIoU(MulticlassJaccardIndex):
    """Pixel IoU (Jaccard) averaged over the foreground classes 1..C-1, over the whole epoch.

    torchmetrics averages over every class or none; background covers most pixels and would flatter the
    score, so it is dropped here, as ``DiceScore(include_background=False)`` drops it for Dice.
    """

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(num_classes, average="none", zero_division=float("nan"), **kwargs)

    def compute(self) -> torch.Tensor:
        return super().compute()[1:].nanmean()


class SegmentationTask(TrainlabTask):
    """Per-pixel classification. Subclasses build ``self.net`` with :attr:`net_outputs` channels.

    Batches are ``(x, y)``: images ``(N, C, H, W)`` and masks ``(N, H, W)`` of class indices (0 is
    background). Binary masks (``num_classes`` 2) use one output channel ``z`` with a sigmoid; more
    classes use one channel each with a softmax. ``forward`` always returns ``(N, num_classes, H, W)``
    logits (``[0, z]`` for binary), so ``argmax(1)`` is the predicted mask either way.

    Losses: ``bce`` (binary cross-entropy; softmax cross-entropy for multi-class), ``dice`` (soft Dice
    over the foreground classes) and ``bce_dice`` (their sum). Metrics: ``dice`` and ``iou`` over the
    foreground classes, pixels pooled over the epoch.
    """

    monitor = "val/dice"
    monitor_mode = "max"
    task_type = "segmentation"

    def __init__(self, num_classes: int, loss: SegmentationLoss = "bce_dice", l1_penalty: float = 0.0) -> None:
        super().__init__(l1_penalty=l1_penalty)
        if num_classes < 2:
            raise ValueError(f"segmentation needs at least 2 classes (background and foreground), got {num_classes}")
        self.num_classes = num_classes
        self.loss_name = loss
        metrics = MetricCollection(
            {
                "dice": DiceScore(num_classes, include_background=False, average="macro", aggregation_level="global", input_format="index"),
                "iou": ForegroundIoU(num_classes),
            }
        )
        self.metrics = nn.ModuleDict({f"{stage}_metrics": metrics.clone(prefix=f"{stage}/") for stage in ("train", "val", "test")})

    net: nn.Module

    @property
    def net_outputs(self) -> int:
        return 1 if self.num_classes == 2 else self.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return torch.cat([torch.zeros_like(out), out], dim=1) if self.num_classes == 2 else out

    def shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        out = self.net(x)
        loss = segmentation_loss(self.loss_name, out, y)
        predicted = (out[:, 0] > 0).long() if self.num_classes == 2 else out.argmax(1)
        metrics = self.metrics[f"{stage}_metrics"]
        metrics.update(predicted, y)
        self.log_epoch_metric(f"{stage}/loss", loss.detach(), batch_size=len(y))
        return loss


class UNetSegmenter(SegmentationTask):
    """A U-Net under the segmentation task; ``num_classes`` and ``input_shape`` (C, H, W) come from the datamodule.

    Example experiment-file section::

        model:
          class_path: UNetSegmenter
          init_args: {width: 16, depth: 3, loss: bce_dice, batch_norm: true}
    """

    def __init__(
        self,
        width: PositiveInt = 16,
        depth: PositiveInt = 3,
        activation: Activation = "relu",
        batch_norm: bool = True,
        dropout: UnitFraction = 0.0,
        init: Init = "default",
        loss: SegmentationLoss = "bce_dice",
        l1_penalty: NonNegativeFloat = 0.0,
        num_classes: Optional[PositiveInt] = None,
        input_shape: Optional[list[PositiveInt]] = None,
    ) -> None:
        if num_classes is None or input_shape is None or len(input_shape) != 3:
            raise ValueError("UNetSegmenter needs num_classes and a (C, H, W) input_shape from the datamodule")
        super().__init__(num_classes=num_classes, loss=loss, l1_penalty=l1_penalty)
        self.save_hyperparameters()
        self.net = UNet(
            in_channels=input_shape[0],
            out_channels=self.net_outputs,
            width=width,
            depth=depth,
            activation=activation,
            batch_norm=batch_norm,
            dropout=dropout,
            init=init,
        )
