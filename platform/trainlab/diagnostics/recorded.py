"""Pictures drawn after the fact from what a run recorded: for runs that trained with ``pictures=False``.

A study trial keeps its numbers (per-epoch curves, per-layer gradient norms, verdict tags) and draws
nothing while it trains; the study then draws the pictures of the trials a user will look at (the
completed ones, or the best few) from the MLflow record, off the trials' critical path. The figures are
the ones the run would have drawn itself: the same functions draw them from the same numbers.

Example::

    from mlflow import MlflowClient
    draw_recorded_pictures(MlflowClient("sqlite:///mlflow.db"), run_id)
    # ['plots/learning_curves.png', 'diagnostics/gradient_flow_heatmap.png', 'diagnostics/gradient_flow_layers.png']
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from trainlab.diagnostics.gradient_flow import (
    LAYERS_TAG,
    VERDICT_TAG,
    GradientVerdict,
    gradient_flow_figures,
    metric_safe,
)
from trainlab.diagnostics.spec import GradientFlowSpec

LEARNING_CURVES = "plots/learning_curves.png"
_CURVE_KEYS = ("optim/lr", "optim/momentum", "overfit_epoch")
_NORM, _RATIO = "gradients/grad_norm/", "gradients/update_ratio/"


def draw_recorded_pictures(client, run_id: str, metrics: Sequence[str] | None = None) -> list[str]:
    """Draw the learning curves and gradient-flow pictures a run lacks, from its recorded metrics and tags.

    ``metrics``: the learning-curve panels (``("loss", "acc")``); by default ``loss`` and, when recorded,
    ``acc``. Pictures the run already has are left alone. Returns the artifact paths written.
    """
    run = client.get_run(run_id)
    present = {a.path for folder in ("plots", "diagnostics") for a in client.list_artifacts(run_id, folder)}
    keys = set(run.data.metrics)
    written: list[str] = []
    if LEARNING_CURVES not in present:
        from trainlab.tracking.plots import learning_curves_figure

        panels = tuple(metrics) if metrics else ("loss", "acc") if "val/acc" in keys or "train/acc" in keys else ("loss",)
        wanted = [k for k in keys if k.split("/", 1)[-1] in panels and k.split("/", 1)[0] in ("train", "val")]
        history = {key: _history(client, run_id, key) for key in [*wanted, *(k for k in _CURVE_KEYS if k in keys)]}
        if any(history.values()):
            client.log_figure(run_id, learning_curves_figure(history, panels), LEARNING_CURVES)
            written.append(LEARNING_CURVES)
    if any(key.startswith(_NORM) for key in keys) and "diagnostics/gradient_flow_heatmap.png" not in present:
        for path, figure in _gradient_figures(client, run, keys).items():
            client.log_figure(run_id, figure, path)
            written.append(path)
    return written


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _gradient_figures(client, run, keys: set[str]) -> dict[str, Any]:
    run_id = run.info.run_id
    recorded = {key[len(_NORM) :] for key in keys if key.startswith(_NORM)}
    # Layers from input to output, named as the monitor names them: the parameter table is in module order.
    layers = [(name, kind) for name, kind in _parameter_table(client, run_id) if metric_safe(name) in recorded]
    if len(layers) != len(recorded):
        layers = [(name, "") for name in sorted(recorded)]
    names = [f"{name} ({kind})" if kind else name for name, kind in layers]
    norm_curves = [dict(_history(client, run_id, _NORM + metric_safe(name))) for name, _ in layers]
    ratio_curves = [dict(_history(client, run_id, _RATIO + metric_safe(name))) for name, _ in layers]
    epochs = sorted(set().union(*norm_curves))
    norms = np.array([[curve.get(e, np.nan) for curve in norm_curves] for e in epochs])
    ratios = np.array([[curve.get(e, np.nan) for curve in ratio_curves] for e in epochs])
    tags, params = run.data.tags, run.data.params
    responsible = {n.strip() for n in tags.get(LAYERS_TAG, "").split(",")}
    verdict = GradientVerdict(tags.get(VERDICT_TAG, "healthy"), [i for i, (name, _) in enumerate(layers) if name in responsible])
    defaults = GradientFlowSpec()
    vanishing = float(params.get("diagnostics.gradient_flow.vanishing_ratio", defaults.vanishing_ratio))
    exploding = float(params.get("diagnostics.gradient_flow.exploding_norm", defaults.exploding_norm))
    return gradient_flow_figures(norms, ratios, names, verdict, vanishing, exploding)


def _parameter_table(client, run_id: str) -> list[tuple[str, str]]:
    """``(layer, type)`` rows of the run's ``model/parameters.csv`` (empty when the run has none)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="trainlab-pictures-") as tmp:
        try:
            text = Path(client.download_artifacts(run_id, "model/parameters.csv", tmp)).read_text()
        except Exception:  # no table recorded (a run from another tool): fall back to the metric names
            return []
    return [(row["layer"], row["type"]) for row in csv.DictReader(io.StringIO(text)) if row["layer"] != "total"]
