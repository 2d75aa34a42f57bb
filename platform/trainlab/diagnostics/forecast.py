"""Forecasting: predicted vs true series on the test set."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from trainlab.diagnostics._predictions import TestOutputs, split_batch
from trainlab.diagnostics._tracking import log_figure, new_figure


class ForecastPlot(Callback):
    """Predicted vs true values on the test set as ``diagnostics/forecast_test.png``.

    Top panel: the first forecast step of every test window against the truth, in test order (for a
    chronological test split, the one-step-ahead forecast over the test period). With a horizon longer
    than one, ``samples`` windows spread over the test set follow, each with its whole forecast against
    the truth. Batches are ``(x, y)`` or ``(x, lengths, y)`` with targets ``(N,)``, ``(N, horizon)`` or
    ``(N, horizon, features)`` (the first feature is drawn); the task's ``forward`` returns predictions of
    the same size. Rank 0 draws from its own test batches.

    Example::

        trainer = Trainer(callbacks=[ForecastPlot(samples=4)])
        trainer.test(model, datamodule=dm)   # -> diagnostics/forecast_test.png
    """

    def __init__(self, samples: int = 6) -> None:
        self.samples = samples
        self._true: list[torch.Tensor] = []
        self._predicted: list[torch.Tensor] = []
        self._outputs = TestOutputs()

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._true, self._predicted = [], []
        if trainer.is_global_zero:
            self._outputs.attach(pl_module)

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not trainer.is_global_zero:
            return
        predicted = self._outputs.of_batch(pl_module, batch)
        target = split_batch(batch)[1]
        self._true.append(_steps(target).cpu())
        self._predicted.append(_steps(predicted.reshape(target.shape)).cpu())

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._outputs.detach()
        if trainer.is_global_zero and self._true:
            figure = _figure(torch.cat(self._true).float().numpy(), torch.cat(self._predicted).float().numpy(), self.samples)
            log_figure(trainer, figure, "diagnostics/forecast_test.png")


def _steps(values: torch.Tensor) -> torch.Tensor:
    """(N,) / (N, horizon) / (N, horizon, features) → (N, horizon) of the first feature."""
    values = values.detach()
    if values.dim() == 1:
        return values.unsqueeze(1)
    return values[..., 0] if values.dim() == 3 else values.reshape(len(values), -1)


def _figure(true: np.ndarray, predicted: np.ndarray, samples: int):
    horizon = true.shape[1]
    windows = np.unique(np.linspace(0, len(true) - 1, min(samples, len(true))).astype(int)) if horizon > 1 else []
    columns = min(len(windows), 3) or 1
    rows = 1 + -(-len(windows) // columns)
    fig = new_figure(figsize=(12, 3.6 * rows))
    grid = fig.add_gridspec(rows, columns)
    top = fig.add_subplot(grid[0, :])
    top.plot(true[:, 0], label="true", color="black", lw=1.2)
    top.plot(predicted[:, 0], label="predicted", color="tab:orange", lw=1.2)
    mae = np.abs(true[:, 0] - predicted[:, 0]).mean()
    top.set_title(f"Test set, first forecast step of each window (MAE {mae:.4g})")
    top.set_xlabel("test window (in order)")
    top.legend()
    top.grid(alpha=0.3)
    for k, index in enumerate(windows):
        ax = fig.add_subplot(grid[1 + k // columns, k % columns])
        steps = np.arange(1, horizon + 1)
        ax.plot(steps, true[index], "-o", color="black", ms=3, label="true")
        ax.plot(steps, predicted[index], "-o", color="tab:orange", ms=3, label="predicted")
        ax.set_title(f"test window {index}", fontsize=9)
        ax.set_xlabel("steps ahead")
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
