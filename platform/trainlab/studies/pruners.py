"""``study.pruner``: which Optuna pruner stops unpromising trials, judged on the metric each epoch.

``pruner: median`` or ``pruner: {type: median, n_startup_trials: 5, n_warmup_steps: 2}``; keys besides
``type`` go to the Optuna pruner's constructor. Steps are epochs.
"""

from __future__ import annotations

from typing import Any

from trainlab.errors import ConfigError

PRUNERS = {
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "hyperband": "HyperbandPruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "threshold": "ThresholdPruner",
    "none": "NopPruner",
}


def build_pruner(settings: dict[str, Any], max_epochs: int | None = None):
    """The pruner ``settings`` describe. Hyperband's resource is the epoch: 1 up to ``trainer.max_epochs``."""
    import optuna

    kind = settings["type"]
    options = {key: value for key, value in settings.items() if key != "type"}
    if kind == "hyperband":
        options.setdefault("min_resource", 1)
        if max_epochs:
            options.setdefault("max_resource", max_epochs)
    cls = getattr(optuna.pruners, PRUNERS[kind])
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError("study.pruner", settings, f"options that optuna.pruners.{cls.__name__} accepts", hint=str(exc)) from None
