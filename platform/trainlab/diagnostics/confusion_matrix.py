"""Classification: the test set's confusion matrix with per-class precision and recall."""

from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torchmetrics.classification import MulticlassConfusionMatrix

from trainlab.diagnostics._predictions import TestOutputs, split_batch
from trainlab.diagnostics._tracking import log_epoch_metrics, log_figure, margins, new_figure

# Beyond this many classes the counts no longer fit in the cells.
_MAX_ANNOTATED_CLASSES = 20


class ConfusionMatrixReport(Callback):
    """Confusion matrix of the test set as ``diagnostics/confusion_matrix.png``, with precision and recall per class.

    The counts live in a torchmetrics ``MulticlassConfusionMatrix``, so they are summed over all DDP ranks.
    Predictions are the ``argmax`` of what the task's ``forward`` returns (``(N, num_classes)`` logits).
    Per-class values are also logged as metrics ``test/precision/<class>`` and ``test/recall/<class>``.
    Class names come from ``class_names`` or the datamodule's ``class_names`` attribute, else indices.
    ``pictures=False`` logs the metrics and draws nothing.

    Example::

        trainer = Trainer(callbacks=[ConfusionMatrixReport()])
        trainer.test(model, datamodule=dm)   # -> diagnostics/confusion_matrix.png
    """

    def __init__(self, class_names: Sequence[str] | None = None, pictures: bool = True) -> None:
        self.class_names = list(class_names) if class_names else None
        self.pictures = pictures
        self.matrix: torch.Tensor | None = None
        self._metric: MulticlassConfusionMatrix | None = None
        self._outputs = TestOutputs()

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        classes = getattr(pl_module, "num_classes", None)
        # Created up front when the class count is known, so every DDP rank holds one even without batches.
        self._metric = MulticlassConfusionMatrix(int(classes)).to(pl_module.device) if classes else None
        self._outputs.attach(pl_module)

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        logits = self._outputs.of_batch(pl_module, batch)
        target = split_batch(batch)[1]
        if self._metric is None:
            self._metric = MulticlassConfusionMatrix(logits.shape[1]).to(logits.device)
        self._metric.update(logits.argmax(1), target.long())

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._outputs.detach()
        if self._metric is None:
            return
        self.matrix = self._metric.compute().cpu()  # every rank takes part: the counts are reduced across them
        if not trainer.is_global_zero:
            return
        matrix = self.matrix.numpy().astype(float)
        names = self._names(trainer, len(matrix))
        precision = np.divide(np.diag(matrix), matrix.sum(axis=0), out=np.full(len(matrix), np.nan), where=matrix.sum(axis=0) > 0)
        recall = np.divide(np.diag(matrix), matrix.sum(axis=1), out=np.full(len(matrix), np.nan), where=matrix.sum(axis=1) > 0)
        metrics = {}
        for index, (p, r) in enumerate(zip(precision, recall)):
            if not np.isnan(p):
                metrics[f"test/precision/{index}"] = float(p)
            if not np.isnan(r):
                metrics[f"test/recall/{index}"] = float(r)
        log_epoch_metrics(trainer, metrics)
        if self.pictures:
            log_figure(trainer, _figure(matrix, names, precision, recall), "diagnostics/confusion_matrix.png")

    def _names(self, trainer: L.Trainer, count: int) -> list[str]:
        names = self.class_names or getattr(trainer.datamodule, "class_names", None)
        return [str(n) for n in names] if names is not None and len(names) == count else [str(i) for i in range(count)]


def _figure(matrix: np.ndarray, names: list[str], precision: np.ndarray, recall: np.ndarray):
    count = len(matrix)
    size = min(4 + 0.55 * count, 16)
    fig = new_figure(figsize=(size + 1.5, size))
    ax = fig.subplots()
    longest = max((len(n) for n in names), default=2)
    # Room for "name  R 0.95" on the left and two-line (or, past 12 classes, vertical) ticks below.
    below = 0.9 + (0.065 * (longest + 7) if count > 12 else 0.3)
    margins(fig, left=0.75 + 0.065 * (longest + 8), right=0.9, bottom=below, top=0.45)  # right: the colour bar's label
    # Colour by row share (the recall of each cell), so rare classes are as readable as common ones.
    shares = matrix / np.clip(matrix.sum(axis=1, keepdims=True), 1, None)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if count <= _MAX_ANNOTATED_CLASSES:
        for i in range(count):
            for j in range(count):
                if matrix[i, j]:
                    ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center", fontsize=8, color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(count))
    ax.set_yticks(range(count))
    ax.set_xticklabels([f"{n}\nP {_share(p)}" for n, p in zip(names, precision)], fontsize=8, rotation=90 if count > 12 else 0)
    ax.set_yticklabels([f"{n}  R {_share(r)}" for n, r in zip(names, recall)], fontsize=8)
    ax.set_xlabel("predicted class (P = precision)")
    ax.set_ylabel("true class (R = recall)")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"Test confusion matrix: {int(matrix.sum())} samples, accuracy {accuracy:.3f}")
    return fig


def _share(value: float) -> str:
    return "–" if np.isnan(value) else f"{value:.2f}"  # no prediction of (or no sample in) that class
