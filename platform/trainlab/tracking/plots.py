"""Learning-curve figure: train vs validation loss and the main metric, per epoch, with the optimiser's settings."""

from __future__ import annotations

from typing import Sequence

# Series that are no learning curve: optimiser settings (their own panel), single values, diagnostics.
_NOT_CURVES = ("optim/", "best/", "test/", "gradients/", "overfit_epoch")


def curve_panels(history: dict[str, list[tuple[int, float]]], monitor: str | None) -> list[tuple[str, list[str]]]:
    """Which curves the learning-curve figure shows: ``[(panel title, [series, ...]), ...]``.

    Names in trainlab's ``stage/name`` form (``val/acc``): the loss and the monitored metric, train vs
    validation. Any other names (a user's ``val_acc``, ``train_loss``): every logged epoch curve, losses
    in one panel and the other metrics in another, the monitored one first.
    """
    stem = monitor.split("/", 1)[1] if monitor and monitor.startswith(("train/", "val/")) else None
    conventional = [m for m in dict.fromkeys(("loss", stem)) if stem and (f"train/{m}" in history or f"val/{m}" in history)]
    if conventional:
        return [(f"{m}: train vs validation", [f"{stage}/{m}" for stage in ("train", "val")]) for m in conventional]
    curves = [name for name in history if not name.startswith(_NOT_CURVES)]
    losses = [name for name in curves if "loss" in name]
    others = sorted((name for name in curves if name not in losses), key=lambda name: name != monitor)
    return [(title, names) for title, names in (("losses", losses), ("metrics", others)) if names]


def learning_curves_figure(
    history: dict[str, list[tuple[int, float]]],
    metrics: Sequence[str] = ("loss", "acc"),
    panels: Sequence[tuple[str, Sequence[str]]] | None = None,
):
    """One panel per metric name found in ``history`` as ``train/<name>`` and/or ``val/<name>``, or, given
    ``panels`` (see :func:`curve_panels`), one per ``(title, series names)``.

    When ``history`` holds ``optim/lr`` (and ``optim/momentum``), a last panel shows them per epoch, so a
    jump in the loss can be read against the learning rate of that epoch. When it holds ``overfit_epoch``
    (written by the overfitting diagnostic), every panel marks that epoch.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if panels is None:
        panels = [(f"{m}: train vs validation", [f"train/{m}", f"val/{m}"]) for m in metrics]
    present = [(title, [name for name in names if history.get(name)]) for title, names in panels]
    present = [(title, names) for title, names in present if names]
    optimiser = "optim/lr" in history
    count = max(len(present) + optimiser, 1)
    # A Figure outside pyplot (nothing to close; PNGs render with Agg) with fixed margins: tight_layout
    # would draw the figure once more to measure what is known here (a third of this figure's cost).
    width = 5.5 * count
    fig = Figure(figsize=(width, 4))
    axes = fig.subplots(1, count, squeeze=False)
    twin = optimiser and bool(history.get("optim/momentum"))
    fig.subplots_adjust(left=0.8 / width, right=1 - (0.9 if twin else 0.25) / width, bottom=0.55 / 4, top=1 - 0.35 / 4, wspace=0.3 + 0.2 * twin)
    for ax, (title, names) in zip(axes[0], present):
        for name in names:
            steps, values = zip(*history[name])
            style = "-s" if name.startswith("val") else "-o"
            ax.plot(steps, values, style, markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(title.split(":")[0])
        ax.set_title(title)
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
