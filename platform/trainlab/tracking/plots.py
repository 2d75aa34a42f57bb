"""Learning-curve figure: train vs validation loss and the main metric, per epoch."""

from __future__ import annotations

from typing import Sequence


def learning_curves_figure(history: dict[str, list[tuple[int, float]]], metrics: Sequence[str] = ("loss", "acc")):
    """One panel per metric name found in ``history`` as ``train/<name>`` and/or ``val/<name>``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [m for m in metrics if f"train/{m}" in history or f"val/{m}" in history]
    fig, axes = plt.subplots(1, max(len(present), 1), figsize=(5.5 * max(len(present), 1), 4), squeeze=False)
    for ax, metric in zip(axes[0], present):
        for stage, style in (("train", "-o"), ("val", "-s")):
            points = history.get(f"{stage}/{metric}")
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, style, markersize=3, label=f"{stage}/{metric}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric}: train vs validation")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig
