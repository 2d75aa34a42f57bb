"""A study's objectives and constraints: ``study.metrics`` (several metrics, each with its direction) and
``study.constraints`` (``{model/params: "<= 50000"}``), and the values one trial scores on them.

Example experiment-file section::

    study:
      metrics: {val/acc: maximize, model/params: minimize, model/latency_ms: minimize}
      constraints: {model/params: "<= 50000"}

The first metric must be one the model logs each epoch: it is the trial's monitor (the checkpoint keeps
its best epoch). Every other value describes that same kept model: a metric's value at the kept epoch,
or, for a metric logged once (``model/params``, ``model/latency_ms``), that one value.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from trainlab.errors import ConfigError
from trainlab.training.measurements import MEASURES

DIRECTIONS = ("minimize", "maximize")
_CONSTRAINT = re.compile(r"^\s*(<=|>=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
# Samplers that read trial constraints (Optuna's Trial.set_constraint); the others would ignore them.
CONSTRAINT_SAMPLERS = ("tpe", "nsga2", "nsga3", "gp")
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str  # minimize | maximize


@dataclass(frozen=True)
class Constraint:
    """``metric <= bound`` or ``metric >= bound``; Optuna's convention: a value <= 0 is feasible."""

    metric: str
    op: str  # "<=" | ">="
    bound: float

    def violation(self, value: float) -> float:
        return value - self.bound if self.op == "<=" else self.bound - value

    def describe(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


def check_metric_name(key: str, metric: Any) -> str:
    """A metric a study may read: logged by the model, or one of trainlab's measured ``model/`` values."""
    if not isinstance(metric, str) or not metric:
        raise ConfigError(key, metric, "a metric name the model logs each epoch, e.g. val/acc")
    if metric.startswith("test/"):
        raise ConfigError(key, metric, "a validation metric such as val/acc (test metrics must not steer the search)")
    if metric.startswith("model/") and metric not in MEASURES:
        raise ConfigError(key, metric, f"a metric the model logs, or one trainlab measures: {', '.join(MEASURES)}")
    return metric


def parse_objectives(section: dict[str, Any]) -> tuple[Objective, ...] | None:
    """``study.metrics`` as objectives in the file's order; None when the file uses ``metric``/``direction``."""
    metrics = section.get("metrics")
    if metrics is None:
        return None
    if "metric" in section or "direction" in section:
        raise ConfigError("study.metrics", expected="either metrics: {NAME: DIRECTION, ...} or metric/direction, not both")
    if not isinstance(metrics, dict) or not metrics:
        raise ConfigError("study.metrics", metrics, "a mapping of metric to direction, e.g. {val/acc: maximize, model/params: minimize}")
    objectives = []
    for metric, direction in metrics.items():
        check_metric_name("study.metrics", metric)
        if direction not in DIRECTIONS:
            raise ConfigError(f"study.metrics.{metric}", direction, "minimize or maximize")
        objectives.append(Objective(metric, direction))
    if objectives[0].metric in MEASURES:
        raise ConfigError(
            "study.metrics", objectives[0].metric,
            "an epoch metric first (it is the trial's monitor: the checkpoint keeps its best epoch), e.g. {val/acc: maximize, model/params: minimize}",
        )
    return tuple(objectives)


def parse_constraints(value: Any) -> tuple[Constraint, ...]:
    """``study.constraints``: ``{METRIC: "<= NUMBER" | ">= NUMBER"}``."""
    if value is None:
        return ()
    if not isinstance(value, dict) or not value:
        raise ConfigError("study.constraints", value, 'a mapping of metric to bound, e.g. {model/params: "<= 50000"}')
    constraints = []
    for metric, bound in value.items():
        check_metric_name("study.constraints", metric)
        match = _CONSTRAINT.match(str(bound))
        if not match or not math.isfinite(float(match.group(2))):
            raise ConfigError(f"study.constraints.{metric}", bound, 'a bound such as "<= 50000" or ">= 0.9" (<= or >= and a number)')
        constraints.append(Constraint(metric, match.group(1), float(match.group(2))))
    return tuple(constraints)


def check_sampler_and_pruner(objectives: tuple[Objective, ...], constraints: tuple[Constraint, ...], sampler: str, pruner: str) -> None:
    """What Optuna cannot do: prune several objectives, use constraints in every sampler, CMA-ES on several."""
    if len(objectives) > 1 and pruner != "none":
        raise ConfigError("study.pruner", pruner, "none for a study with several metrics (Optuna cannot prune multi-objective trials)")
    if len(objectives) > 1 and sampler in SINGLE_OBJECTIVE_SAMPLERS:
        raise ConfigError("study.sampler", sampler, "a multi-objective sampler: tpe, nsga2, nsga3, gp, random, qmc or grid")
    if constraints and sampler not in CONSTRAINT_SAMPLERS:
        raise ConfigError("study.sampler", sampler, f"a sampler that uses study.constraints: {', '.join(CONSTRAINT_SAMPLERS)}")


def measured_values(history: dict[str, list[tuple[int, float]]], objectives, constraints) -> dict[str, float]:
    """Every metric the objectives and constraints name, for the model the trial keeps.

    The first objective: its best epoch value (the checkpoint's epoch; the earliest on a tie, as
    Lightning's checkpoint keeps it). Any other metric: its value at that epoch, or its last value when
    it was not logged then (the measures are logged once, at the end of fit). A metric never logged
    raises ``KeyError`` with its name.
    """
    first = objectives[0]
    points = [(step, value) for step, value in history.get(first.metric, []) if math.isfinite(value)]
    if not points:
        raise KeyError(first.metric)
    sign = -1.0 if first.direction == "maximize" else 1.0
    kept_step, best = min(points, key=lambda point: (sign * point[1], point[0]))
    values = {first.metric: best}
    for metric in [o.metric for o in objectives[1:]] + [c.metric for c in constraints]:
        points = history.get(metric)
        if not points:
            raise KeyError(metric)
        at_kept = [value for step, value in points if step == kept_step]
        values[metric] = at_kept[-1] if at_kept else points[-1][1]
    return values
