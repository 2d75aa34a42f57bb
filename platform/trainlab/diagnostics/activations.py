"""Activation histograms: what each activation layer outputs, in the first epoch and in the last."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from trainlab.diagnostics._tracking import log_figure, new_figure

# Values kept per layer and epoch: enough for a smooth histogram, small enough to hold on the host.
_SAMPLE = 20_000


def activation_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules from ``torch.nn.modules.activation`` (ReLU, Sigmoid, Tanh, ...), in definition order."""
    return [(name, m) for name, m in module.named_modules() if type(m).__module__ == "torch.nn.modules.activation"]


class ActivationHistograms(Callback):
    """Histograms of every activation layer's outputs on the first training batch of the first and the last epoch.

    Hooks are attached for that one batch only, so the values are exactly what training saw (batch norm in
    training mode included). Sigmoid/tanh panels state the share of saturated outputs (slope near zero),
    ReLU-family panels the share of zeros (units passing no gradient). Written as
    ``diagnostics/activation_histograms.png``. Off by default in trainlab: it moves activations to the host.

    Example::

        trainer = Trainer(callbacks=[ActivationHistograms()])
        # deep sigmoid MLP -> most outputs of the late layers pile up near 0 and 1
    """

    def __init__(self) -> None:
        self.first: dict[str, np.ndarray] = {}
        self.last: dict[str, np.ndarray] = {}
        self.last_epoch = 0
        self._current: dict[str, np.ndarray] = {}
        self._handles: list[Any] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if batch_idx != 0 or not trainer.is_global_zero:
            return
        self._current = {}
        for name, module in activation_layers(pl_module):
            self._handles.append(module.register_forward_hook(self._keeper(f"{name} ({type(module).__name__})")))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self._handles:
            return
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if not self.first:
            self.first = self._current
        self.last, self.last_epoch = self._current, trainer.current_epoch

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and self.first:
            log_figure(trainer, _figure(self.first, self.last, self.last_epoch), "diagnostics/activation_histograms.png")

    def _keeper(self, label: str):
        def keep(module: nn.Module, args, output) -> None:
            if isinstance(output, torch.Tensor):
                values = output.detach().flatten()
                if len(values) > _SAMPLE:
                    values = values[torch.randperm(len(values), device=values.device)[:_SAMPLE]]
                self._current[label] = values.float().cpu().numpy()

        return keep


def _figure(first: dict[str, np.ndarray], last: dict[str, np.ndarray], last_epoch: int):
    labels = list(first)
    columns = min(len(labels), 4)
    rows = -(-len(labels) // columns)
    fig = new_figure(figsize=(3.6 * columns, 2.8 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[len(labels):]:
        ax.axis("off")
    for ax, label in zip(axes.flat, labels):
        for values, name, colour in ((first[label], "epoch 0", "tab:blue"), (last.get(label), f"epoch {last_epoch}", "tab:orange")):
            if values is not None:
                ax.hist(values, bins=60, alpha=0.55, color=colour, label=f"{name}{_health(label, values)}")
        ax.set_title(label, fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle("Activation outputs on the first training batch of the first and last epoch")
    fig.tight_layout()
    return fig


def _health(label: str, values: np.ndarray) -> str:
    if "(Sigmoid)" in label:
        return f", {np.mean((values < 0.02) | (values > 0.98)):.0%} saturated"
    if "(Tanh)" in label:
        return f", {np.mean(np.abs(values) > 0.96):.0%} saturated"
    if "ReLU" in label:
        return f", {np.mean(values <= 0):.0%} zero"
    return ""
