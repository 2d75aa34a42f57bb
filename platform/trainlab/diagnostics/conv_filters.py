"""CNN filters: the first convolution layer's learned kernels as a grid of small images."""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from trainlab.diagnostics._tracking import log_figure, new_figure


def first_conv(module: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """The first ``nn.Conv2d`` in definition order (the one that sees the raw image), with its name."""
    return next(((name, m) for name, m in module.named_modules() if isinstance(m, nn.Conv2d)), None)


class ConvFilterGrid(Callback):
    """Draws the first convolution layer's kernels at the end of training: what edge and blob detectors it learned.

    One tile per output channel: grey for one input channel, colour for three (RGB), the mean over input
    channels otherwise. Each tile is scaled on its own, so weak and strong filters are equally visible.
    Written as ``diagnostics/conv1_filters.png``; models without a ``Conv2d`` get nothing.

    Example::

        trainer = Trainer(callbacks=[ConvFilterGrid()])
        trainer.fit(cnn, datamodule=dm)   # -> diagnostics/conv1_filters.png
    """

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        found = first_conv(pl_module)
        if found is None or not trainer.is_global_zero:
            return
        name, conv = found
        log_figure(trainer, _figure(conv.weight.detach().float().cpu(), name), "diagnostics/conv1_filters.png")


def _figure(weight: torch.Tensor, name: str):
    count, channels = weight.shape[:2]
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    fig = new_figure(figsize=(max(1.2 * columns, 6), 1.2 * rows + 1))
    axes = fig.subplots(rows, columns, squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index >= count:
            continue
        kernel = weight[index]
        tile = kernel.permute(1, 2, 0) if channels == 3 else kernel.mean(dim=0)
        low, high = tile.min(), tile.max()
        tile = ((tile - low) / (high - low).clamp_min(1e-12)).numpy()
        ax.imshow(tile, cmap="gray" if tile.ndim == 2 else None, interpolation="nearest")
    kernel_size = "×".join(str(s) for s in weight.shape[2:])
    fig.suptitle(f"{name}: {count} filters, {channels} input channel(s), {kernel_size}\n(each scaled on its own: light = most positive)", fontsize=10)
    fig.tight_layout()
    return fig
