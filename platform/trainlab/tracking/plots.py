"""Learning-curve figure: train vs validation loss and the main metric, per epoch, with the optimiser's settings."""

from __future__ import annotations

from typing import Sequence


def learning_curves_figure(history: dict[str, list[tuple[int, float]]], metrics: Sequence[str] = ("loss", "acc")):
    """One panel per metric name found in ``history`` as ``train/<name>`` and/or ``val/<name>``.

    When ``history`` holds ``optim/lr`` (and ``optim/momentum``), a last panel shows them per epoch, so a
    jump in the loss can be read against the learning rate of that epoch. When it holds ``overfit_epoch``
    (written by the overfitting diagnostic), every panel marks that epoch.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    present = [m for m in metrics if f"train/{m}" in history or f"val/{m}" in history]
    optimiser = "optim/lr" in history
    panels = max(len(present) + optimiser, 1)
    # A Figure outside pyplot (nothing to close; PNGs render with Agg) with fixed margins: tight_layout
    # would draw the figure once more to measure what is known here (a third of this figure's cost).
    width = 5.5 * panels
    fig = Figure(figsize=(width, 4))
    axes = fig.subplots(1, panels, squeeze=False)
    twin = optimiser and bool(history.get("optim/momentum"))
    fig.subplots_adjust(left=0.8 / width, right=1 - (0.9 if twin else 0.25) / width, bottom=0.55 / 4, top=1 - 0.35 / 4, wspace=0.3 + 0.2 * twin)
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
    if optimiser:
        _optimiser_panel(axes[0][len(present)], history)
    for ax in axes[0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if history.get("overfit_epoch"):
        epoch = int(history["overfit_epoch"][-1][1])
        for ax in axes[0][: len(present) + optimiser]:
            ax.axvline(epoch, color="tab:red", ls="--", lw=1, label=f"overfitting from epoch {epoch}")
    for ax in axes[0][: len(present)]:
        ax.legend()
    return fig


def _optimiser_panel(ax, history: dict[str, list[tuple[int, float]]]) -> None:
    steps, rates = zip(*history["optim/lr"])
    ax.plot(steps, rates, "-o", markersize=3, color="tab:purple", label="learning rate")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title("optimiser: learning rate and momentum")
    ax.grid(alpha=0.3)
    handles = ax.get_lines()
    if history.get("optim/momentum"):
        twin = ax.twinx()
        steps, momenta = zip(*history["optim/momentum"])
        handles += twin.plot(steps, momenta, "-s", markersize=3, color="tab:gray", label="momentum")
        twin.set_ylabel("momentum")
    ax.legend(handles=handles, labels=[h.get_label() for h in handles], loc="best")
