"""Segmentation: test images with the true and the predicted masks laid over them."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from trainlab.diagnostics._predictions import TestOutputs, split_batch
from trainlab.diagnostics._tracking import log_figure, new_figure


class SegmentationOverlayGrid(Callback):
    """The first ``samples`` test images, each with its true and its predicted mask overlaid, as one PNG.

    Batches are ``(images (N, C, H, W), masks (N, H, W))`` with class indices (0 = background); the task's
    ``forward`` returns ``(N, num_classes, H, W)`` logits, so the predicted mask is their ``argmax``. Each
    row is titled with that image's foreground IoU. Rank 0 draws from its own test batches.

    Example::

        trainer = Trainer(callbacks=[SegmentationOverlayGrid(samples=6)])
        trainer.test(model, datamodule=dm)   # -> diagnostics/segmentation_test_samples.png
    """

    def __init__(self, samples: int = 6) -> None:
        self.samples = samples
        self._images: list[torch.Tensor] = []
        self._true: list[torch.Tensor] = []
        self._predicted: list[torch.Tensor] = []
        self._outputs = TestOutputs()

    def _collected(self) -> int:
        return sum(len(t) for t in self._images)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._images, self._true, self._predicted = [], [], []
        if trainer.is_global_zero:
            self._outputs.attach(pl_module)

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not trainer.is_global_zero or self._collected() >= self.samples:
            return
        logits = self._outputs.of_batch(pl_module, batch)
        take = self.samples - self._collected()
        (images, *_), masks = split_batch(batch)
        predicted = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
        self._images.append(images[:take].detach().cpu())
        self._true.append(masks[:take].detach().reshape(predicted[:take].shape).cpu())
        self._predicted.append(predicted[:take].cpu())
        if self._collected() >= self.samples:
            self._outputs.detach()

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._outputs.detach()
        if trainer.is_global_zero and self._images:
            figure = _figure(torch.cat(self._images), torch.cat(self._true), torch.cat(self._predicted))
            log_figure(trainer, figure, "diagnostics/segmentation_test_samples.png")


def _figure(images: torch.Tensor, true: torch.Tensor, predicted: torch.Tensor):
    import matplotlib

    classes = int(max(true.max(), predicted.max())) + 1
    colours = matplotlib.colormaps["tab10" if classes <= 10 else "tab20"]
    rows = len(images)
    fig = new_figure(figsize=(9, 3 * rows))
    axes = fig.subplots(rows, 3, squeeze=False)
    for row in range(rows):
        picture = _displayable(images[row])
        truth, guess = true[row].numpy(), predicted[row].numpy()
        union = np.logical_or(truth > 0, guess > 0).sum()
        iou = np.logical_and(truth > 0, guess > 0).sum() / union if union else 1.0
        for col, (mask, title) in enumerate(((None, "image"), (truth, "true mask"), (guess, f"predicted (IoU {iou:.2f})"))):
            ax = axes[row, col]
            ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
            if mask is not None:
                ax.imshow(np.ma.masked_equal(mask, 0), cmap=colours, vmin=0, vmax=colours.N - 1, alpha=0.5, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.suptitle("Test images: true vs predicted masks (foreground IoU per image)")
    fig.tight_layout()
    return fig


def _displayable(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) → an (H, W) grey or (H, W, 3) colour picture scaled to [0, 1]."""
    picture = image.float()
    picture = picture.permute(1, 2, 0) if picture.shape[0] == 3 else picture[0]
    low, high = picture.min(), picture.max()
    return ((picture - low) / (high - low).clamp_min(1e-8)).numpy()
