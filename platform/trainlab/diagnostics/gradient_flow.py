"""Gradient flow: which layers get gradients, how much each layer moves, and a vanishing/exploding verdict."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from trainlab.diagnostics._layers import ParameterLayers
from trainlab.diagnostics._tracking import log_epoch_metrics, log_figure, margins, new_figure, second_to, set_tags, write_note

VERDICT_TAG = "trainlab.gradients"
LAYERS_TAG = "trainlab.gradients.layers"

_CURES = {
    "vanishing": "Usual cures: ReLU-family activations instead of sigmoid/tanh, batch norm "
    "(model.init_args.batch_norm), Xavier/Kaiming initialisation (model.init_args.init), fewer layers.",
    "exploding": "Usual cures: gradient clipping (trainer.gradient_clip_val), a lower learning rate, batch norm, "
    "a smaller initialisation scale.",
}


def metric_safe(layer: str) -> str:
    """A layer's name as it appears in metric names: MLflow accepts letters, digits, _ - . / and space."""
    return re.sub(r"[^\w\-./ ]", "_", layer)


@dataclass
class GradientVerdict:
    """``verdict`` is "vanishing", "exploding" or "healthy"; ``layers`` are the indices of the layers responsible."""

    verdict: str
    layers: list[int]


def gradient_verdict(epoch_norms: np.ndarray, vanishing_ratio: float, exploding_norm: float) -> GradientVerdict:
    """The run's verdict from per-epoch mean gradient norms (epochs × layers).

    Exploding: a layer whose norm, averaged over any one epoch, exceeds ``exploding_norm``. Vanishing: a
    layer whose norm averaged over the run is below ``vanishing_ratio`` × the strongest layer's. Layers
    that never received a gradient (frozen or unused) are left out. Exploding wins over vanishing.
    """
    if epoch_norms.size == 0:
        return GradientVerdict("healthy", [])
    exploding = [i for i in range(epoch_norms.shape[1]) if np.any(epoch_norms[:, i] > exploding_norm)]  # inf counts
    if exploding:
        return GradientVerdict("exploding", exploding)
    run_means = epoch_norms.mean(axis=0)
    received = np.isfinite(run_means) & (run_means > 0)
    if not received.any():
        return GradientVerdict("healthy", [])
    strongest = run_means[received].max()
    vanishing = [i for i in np.flatnonzero(received) if run_means[i] < vanishing_ratio * strongest]
    if vanishing:
        return GradientVerdict("vanishing", [int(i) for i in vanishing])
    return GradientVerdict("healthy", [])


class GradientFlowMonitor(Callback):
    """Per-layer gradient norms and weight-update/weight ratios per epoch, with a verdict on the gradient flow.

    A *layer* is a module owning trainable parameters (``net.layers.1 (Linear)``). Each optimiser step adds
    every layer's gradient L2 norm to a running sum on the device (no host sync); at the end of the epoch
    the mean is logged as ``gradients/grad_norm/<layer>``. ``gradients/update_ratio/<layer>`` is
    ||w_end − w_start|| / ||w_start|| over the epoch: how much the layer moved, whatever the optimiser.

    At the end of the run: ``diagnostics/gradient_flow_heatmap.png`` (layers × epochs),
    ``diagnostics/gradient_flow_layers.png`` (one bar per layer) and the tags ``trainlab.gradients`` =
    ``vanishing`` | ``exploding`` | ``healthy`` and ``trainlab.gradients.layers`` (the layers responsible),
    from the thresholds of :func:`gradient_verdict`: a layer whose mean gradient norm is below
    ``vanishing_ratio`` (default 1e-3) × the strongest layer's is vanishing; a layer whose epoch-mean
    gradient norm exceeds ``exploding_norm`` (default 100) is exploding. ``pictures=False`` keeps the
    metrics, tags and note and draws nothing (a study trial); :func:`gradient_flow_figures` draws the same
    pictures later from the recorded metrics.

    Example::

        trainer = Trainer(callbacks=[GradientFlowMonitor(vanishing_ratio=1e-3, exploding_norm=100.0)])
        # deep sigmoid MLP -> tags trainlab.gradients=vanishing, trainlab.gradients.layers=net.layers.1, ...
    """

    def __init__(self, vanishing_ratio: float = 1e-3, exploding_norm: float = 100.0, per_step: bool = False, pictures: bool = True) -> None:
        self.vanishing_ratio = vanishing_ratio
        self.exploding_norm = exploding_norm
        self.per_step = per_step
        self.pictures = pictures
        self.layers: ParameterLayers | None = None
        self.epoch_grad_norms: list[np.ndarray] = []
        self.epoch_update_ratios: list[np.ndarray] = []
        self.verdict: GradientVerdict | None = None
        self._grad_sum: torch.Tensor | None = None
        self._steps = 0
        self._step_norms: list[torch.Tensor] = []
        self._start_weights: list[torch.Tensor] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.layers = ParameterLayers.of(pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._grad_sum = torch.zeros(len(self.layers), device=self.layers.membership.device)
        self._steps = 0
        self._start_weights = [p.detach().clone() for p in self.layers.params]

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        norms = self.layers.step_grad_norms(trainer, optimizer)
        self._grad_sum += norms
        self._steps += 1
        if self.per_step:
            self._step_norms.append(norms)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._close_epoch():
            return
        names = [metric_safe(self.layers.short_name(i)) for i in range(len(self.layers))]
        metrics = {f"gradients/grad_norm/{n}": float(v) for n, v in zip(names, self.epoch_grad_norms[-1])}
        metrics.update({f"gradients/update_ratio/{n}": float(v) for n, v in zip(names, self.epoch_update_ratios[-1])})
        log_epoch_metrics(trainer, metrics)

    # Lightning keeps callbacks' state in a resume checkpoint: a resumed run's verdict and pictures cover all its
    # epochs. Tensors, not numpy arrays: a checkpoint stays loadable with torch.load(weights_only=True).
    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch_grad_norms": [torch.from_numpy(row) for row in self.epoch_grad_norms],
            "epoch_update_ratios": [torch.from_numpy(row) for row in self.epoch_update_ratios],
            "step_norms": [norms.cpu() for norms in self._step_norms],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epoch_grad_norms = [row.numpy() for row in state_dict["epoch_grad_norms"]]
        self.epoch_update_ratios = [row.numpy() for row in state_dict["epoch_update_ratios"]]
        self._step_norms = list(state_dict["step_norms"])

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # A failed or pruned run still gets its verdict: an explosion is exactly what a user wants to see.
        if self.layers is not None:
            with second_to(exception):
                self._close_epoch()
                self._report(trainer)

    def _close_epoch(self) -> bool:
        """Turn the running sums of the epoch into one row of each table; False when no step was taken."""
        if self._steps == 0:
            return False
        with torch.no_grad():
            start_norms = self.layers.norms(self._start_weights)
            moved = self.layers.norms(torch._foreach_sub([p.detach() for p in self.layers.params], self._start_weights))
            ratios = moved / start_norms.clamp_min(1e-12)
        self.epoch_grad_norms.append((self._grad_sum / self._steps).cpu().numpy())
        self.epoch_update_ratios.append(ratios.cpu().numpy())
        self._steps = 0
        return True

    def _report(self, trainer: L.Trainer) -> None:
        if not self.epoch_grad_norms:
            return
        norms = np.stack(self.epoch_grad_norms)
        self.verdict = gradient_verdict(norms, self.vanishing_ratio, self.exploding_norm)
        if not trainer.is_global_zero:
            return
        responsible = ", ".join(self.layers.short_name(i) for i in self.verdict.layers)
        set_tags(trainer, {VERDICT_TAG: self.verdict.verdict, LAYERS_TAG: responsible or "-"})
        if self.verdict.verdict != "healthy":
            write_note(trainer, "gradient_flow", self._explanation(norms))
        if not self.pictures:
            return
        step_norms = torch.stack(self._step_norms).cpu().numpy() if self._step_norms else None
        figures = gradient_flow_figures(
            norms, np.stack(self.epoch_update_ratios), self.layers.names, self.verdict, self.vanishing_ratio, self.exploding_norm, step_norms
        )
        for path, figure in figures.items():
            log_figure(trainer, figure, path)

    def _explanation(self, norms: np.ndarray) -> str:
        layers = ", ".join(self.layers.short_name(i) for i in self.verdict.layers)
        if self.verdict.verdict == "vanishing":
            strongest = norms.mean(axis=0).max()
            finding = (
                f"Vanishing gradients: layers {layers} get a mean gradient norm below {self.vanishing_ratio:g} × "
                f"the strongest layer's ({strongest:.3g})."
            )
        else:
            finding = f"Exploding gradients: layers {layers} have an epoch-mean gradient norm above {self.exploding_norm:g}."
        return f"{finding} {_CURES[self.verdict.verdict]}"


def gradient_flow_figures(
    norms: np.ndarray,
    ratios: np.ndarray,
    names: list[str],
    verdict: GradientVerdict,
    vanishing_ratio: float,
    exploding_norm: float,
    step_norms: np.ndarray | None = None,
) -> dict:
    """The gradient-flow pictures by artifact path, drawn from numbers alone (epochs × layers tables).

    ``names`` read like ``net.layers.1 (Linear)``, from input to output. The monitor draws them at the
    end of a run; a study can draw them later from a trial's recorded ``gradients/*`` metrics.
    """
    flagged = set(verdict.layers)
    bad = "tab:red" if verdict.verdict == "vanishing" else "tab:orange"
    colors = [bad if i in flagged else "tab:green" for i in range(len(names))]
    figures = {
        "diagnostics/gradient_flow_heatmap.png": _heatmap(norms, ratios, names, colors, verdict.verdict),
        "diagnostics/gradient_flow_layers.png": _bars(norms, names, colors, verdict.verdict, vanishing_ratio, exploding_norm),
    }
    if step_norms is not None:
        figures["diagnostics/gradient_norm_per_step.png"] = _per_step(step_norms, names)
    return figures


def _name_margin(names: list[str]) -> float:
    """Inches a column of 8-point layer names needs (about 0.065 in a character)."""
    return 0.3 + 0.065 * max((len(n) for n in names), default=4)


def _heatmap(norms: np.ndarray, ratios: np.ndarray, names: list[str], colors: list[str], verdict: str):
    height = max(3.0, 0.35 * len(names) + 1.5)
    fig = new_figure(figsize=(13, height))
    axes = fig.subplots(1, 2, sharey=True)
    margins(fig, left=_name_margin(names), right=0.3, bottom=0.6, top=0.7, wspace=0.15)
    panels = ((norms, "log10 mean gradient norm"), (ratios, "log10 update / weight ratio"))
    for ax, (values, title) in zip(axes, panels):
        image = ax.imshow(_log10(values.T), aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_xticks(range(values.shape[0]))
        fig.colorbar(image, ax=ax)
    axes[0].set_yticks(range(len(names)))
    axes[0].set_yticklabels(names, fontsize=8)
    for label, color in zip(axes[0].get_yticklabels(), colors):
        label.set_color(color if color != "tab:green" else "black")
    fig.suptitle(f"Gradient flow, layers from input (top) to output: {verdict}")
    return fig


def _bars(norms: np.ndarray, names: list[str], colors: list[str], verdict: str, vanishing_ratio: float, exploding_norm: float):
    means = 10 ** _log10(norms.mean(axis=0))
    fig = new_figure(figsize=(9, max(3.0, 0.35 * len(names) + 1.5)))
    ax = fig.subplots()
    margins(fig, left=_name_margin(names), right=0.3, bottom=0.95, top=0.4)
    positions = np.arange(len(names))
    ax.barh(positions, np.nan_to_num(means, nan=0.0), color=colors)
    ax.set_yticks(positions)
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()  # input layer on top, as in the heatmap
    if np.isfinite(means).any():
        ax.set_xscale("log")
    if vanishing_ratio > 0 and np.isfinite(means).any():
        ax.axvline(vanishing_ratio * np.nanmax(means), color="tab:red", ls="--", label=f"vanishing below {vanishing_ratio:g} × strongest")
    ax.axvline(exploding_norm, color="tab:orange", ls="--", label=f"exploding above {exploding_norm:g}")
    ax.set_xlabel("mean gradient L2 norm over the run")
    ax.set_title(f"Gradient norm per layer: {verdict}")
    fig.legend(loc="lower center", ncol=2, fontsize=8)  # below the axis label, in the bottom margin
    return fig


def _per_step(step_norms: np.ndarray, names: list[str]):
    fig = new_figure(figsize=(10, 5))
    ax = fig.subplots()
    margins(fig, left=0.8, right=0.3, bottom=0.6, top=0.4)
    for i, name in enumerate(names):
        ax.plot(10 ** _log10(step_norms[:, i]), lw=0.8, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("gradient L2 norm")
    ax.set_title("Gradient norm per layer and step")
    ax.legend(fontsize=6, ncol=2)
    return fig


def _log10(values: np.ndarray) -> np.ndarray:
    """log10 for drawing: zeros clipped to 1e-30, inf/NaN (a run that blew up) left blank."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        logs = np.log10(np.clip(values, 1e-30, None))
    return np.where(np.isfinite(logs), logs, np.nan)
