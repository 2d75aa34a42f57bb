"""``study.sampler``: which Optuna sampler proposes the next trial's values.

``sampler: tpe`` or ``sampler: {type: tpe, seed: 42, n_startup_trials: 5}``; every key besides ``type``
and ``seed`` is passed to the Optuna sampler's constructor, so its documentation is the reference.
"""

from __future__ import annotations

from typing import Any

from trainlab.errors import ConfigError
from trainlab.studies.search_space import ChoiceParam, FloatParam, IntParam, SearchSpace

SAMPLERS = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "cmaes": "CmaEsSampler",
    "gp": "GPSampler",
    "grid": "GridSampler",
    "qmc": "QMCSampler",
    "nsga2": "NSGAIISampler",  # multi-objective genetic samplers; they use study.constraints too
    "nsga3": "NSGAIIISampler",
}
# Parallel workers would otherwise all propose the same point while the first trials are still running.
_DEFAULT_OPTIONS = {"tpe": {"constant_liar": True}}
# Samplers whose seed defines one shared sequence, not a random stream per trial.
_ONE_SEED_SAMPLERS = ("qmc",)


def build_sampler(settings: dict[str, Any], space: SearchSpace, seed_offset: int = 0):
    """A fresh sampler from ``settings`` (``{"type": ..., "seed": ..., **options}``).

    ``seed_offset`` (the number of the trial about to be asked) gives each trial its own random stream
    derived from the study seed: a resumed study or a second worker does not replay the first trials'
    random draws, and a one-worker study stays repeatable trial by trial. Not for QMC: a scrambled QMC
    sequence is one sequence only when every worker and every trial shares the study's seed (Optuna's
    docs: QMCSampler "must share the same seed"); it numbers its points through the study storage.
    """
    import optuna

    kind = settings["type"]
    options = {**_DEFAULT_OPTIONS.get(kind, {}), **{k: v for k, v in settings.items() if k not in ("type", "seed")}}
    seed = settings.get("seed")
    if seed is not None:
        options["seed"] = int(seed) + (0 if kind in _ONE_SEED_SAMPLERS else seed_offset)
    if kind == "grid":
        options.setdefault("search_space", grid_of(space))
    cls = _GridSampler() if kind == "grid" else getattr(optuna.samplers, SAMPLERS[kind])
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError("study.sampler", settings, f"options that optuna.samplers.{cls.__name__} accepts", hint=str(exc)) from None


def _GridSampler():
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's grid sampler minus its ``study.stop()`` once every point is done, which works only
        inside ``study.optimize``; trainlab's workers use ask/tell and check ``is_exhausted`` instead."""

        def after_trial(self, study, trial, state, values) -> None:
            return

    return GridSampler


def grid_of(space: SearchSpace) -> dict[str, list[Any]]:
    """Every value the grid sampler will try, per Optuna parameter name (sub-spaces included)."""
    grid: dict[str, list[Any]] = {}
    for param in space.params:
        if isinstance(param, ChoiceParam):
            grid[param.name] = list(param.optuna_choices)
            for branch in param.branches.values():
                grid.update(grid_of(branch))
        elif isinstance(param, IntParam) and not param.log:
            grid[param.name] = list(range(param.low, param.high + 1, param.step))
        elif isinstance(param, FloatParam) and param.step is not None:
            count = int(round((param.high - param.low) / param.step)) + 1
            grid[param.name] = [param.low + i * param.step for i in range(count) if param.low + i * param.step <= param.high + 1e-12]
        else:
            raise ConfigError(f"search_space.{param.path}", expected="a step or choices: the grid sampler needs a finite set of values")
    return grid
