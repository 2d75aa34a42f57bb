"""Optuna's study plots: one self-contained HTML page (plotly.js inlined, works offline) and PNGs.

The PNGs come from ``optuna.visualization.matplotlib``: plotly's own PNG export (kaleido) needs a
browser, matplotlib does not.

Importances use the evaluator optuna-dashboard uses (PED-ANOVA, Optuna's default too), so the parent
run and the dashboard show the same numbers; the plot's title names it, and ``param_importances.json``
holds the numbers.
"""

from __future__ import annotations

import html
import json
import warnings
from pathlib import Path

PLOTS = ("optimization_history", "intermediate_values", "param_importances", "parallel_coordinate", "slice")
# Several objectives: the Pareto front first; the other plots follow the first metric (no intermediate
# values: Optuna takes none from multi-objective trials).
MULTI_OBJECTIVE_PLOTS = ("pareto_front", "optimization_history", "param_importances", "parallel_coordinate", "slice")


def write_study_plots(study, metric: str, directory: Path, metrics: list[str] | None = None) -> list[str]:
    """Write ``study.html`` and ``<plot>.png`` for each plot the study has data for; return notes on skipped ones.

    With several ``metrics`` the Pareto front comes first, also as its own ``pareto_front.html``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization as plotly_plots
    import optuna.visualization.matplotlib as mpl_plots
    from optuna.exceptions import ExperimentalWarning

    directory.mkdir(parents=True, exist_ok=True)
    sections: list[str] = []
    skipped: list[str] = []
    include_js: bool | str = True  # plotly.js once, in the first figure
    several = metrics is not None and len(metrics) > 1
    for name in MULTI_OBJECTIVE_PLOTS if several else PLOTS:
        kwargs = _arguments(name, study, metric)
        if several:
            kwargs = _multi_objective_arguments(name, kwargs, metrics)
        try:
            with warnings.catch_warnings():
                # experimental API notices, matplotlib's "identical limits" note for one-trial axes, and
                # PED-ANOVA's "too few trials: equal importances" (the plot shows that itself)
                warnings.simplefilter("ignore", ExperimentalWarning)
                warnings.simplefilter("ignore", UserWarning)
                figure = getattr(plotly_plots, f"plot_{name}")(study, **kwargs)
                axes = getattr(mpl_plots, f"plot_{name}")(study, **kwargs)
        except Exception as exc:  # a plot the trials cannot support (importances need 2+ complete) must not sink the report
            skipped.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        heading = name.replace("_", " ")
        if name == "param_importances":
            heading = importance_title()
            figure.update_layout(title=heading)
            _figure_of(axes).axes[0].set_title(heading)
            _write_importances(study, directory / "param_importances.json", kwargs.get("target"))
        sections.append(f"<h2>{html.escape(heading)}</h2>")
        sections.append(figure.to_html(full_html=False, include_plotlyjs=include_js))
        include_js = False
        if name == "pareto_front":
            figure.write_html(directory / "pareto_front.html", include_plotlyjs=True)  # plotly.js inlined: no CDN
        png_figure = _figure_of(axes)
        png_figure.savefig(directory / f"{name}.png", dpi=100, bbox_inches="tight")
        plt.close(png_figure)
    if skipped:
        sections.append("<h2>not drawn</h2><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in skipped) + "</ul>")
    title = html.escape(f"study {study.study_name}: {', '.join(metrics) if several else metric}")
    page = f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n<body><h1>{title}</h1>\n{"".join(sections)}\n</body></html>\n'
    (directory / "study.html").write_text(page, encoding="utf-8")
    return skipped


def _arguments(name: str, study, metric: str) -> dict:
    if name == "intermediate_values":
        return {}
    kwargs = {"target_name": metric}
    if name == "param_importances":
        kwargs["evaluator"] = importance_evaluator()
    elif name == "parallel_coordinate":
        # Conditional parameters exist in some trials only; a parallel-coordinate line needs them all.
        kwargs["params"] = _shared_params(study) or None
    return kwargs


def _multi_objective_arguments(name: str, kwargs: dict, metrics: list[str]) -> dict:
    if name == "pareto_front":
        # Optuna draws 2 or 3 objectives; with more, the first three.
        chosen = {"target_names": metrics[:3]}
        if len(metrics) > 3:
            chosen["targets"] = lambda t: t.values[:3]
        return chosen
    return {**kwargs, "target": lambda t: t.values[0], "target_name": metrics[0]}


def importance_evaluator():
    """optuna-dashboard's evaluator, with its defaults: PED-ANOVA over the complete trials, judged in the
    study's direction (the dashboard negates a maximized value and asks for low values: the same trials)."""
    from optuna.importance import PedAnovaImportanceEvaluator

    return PedAnovaImportanceEvaluator()


def importance_title() -> str:
    return f"hyperparameter importances ({type(importance_evaluator()).__name__}, as in optuna-dashboard)"


def _write_importances(study, path: Path, target=None) -> None:
    from optuna.importance import get_param_importances

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        importances = get_param_importances(study, evaluator=importance_evaluator(), target=target)
    path.write_text(json.dumps({"evaluator": type(importance_evaluator()).__name__, "importances": importances}, indent=2))


def _shared_params(study) -> list[str]:
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return []
    shared = set(complete[0].params)
    for trial in complete[1:]:
        shared &= set(trial.params)
    return sorted(shared)


def _figure_of(axes):
    import numpy as np

    first = np.atleast_1d(axes).flat[0]
    return first.figure
