"""The Pareto front of a study, and ``--pick``: the one rule that chooses a trial from it.

The front is Optuna's ``study.best_trials``: the complete trials no other complete trial dominates, among
those that meet every constraint (a trial is feasible when each constraint value is <= 0). A
single-objective study's front is its best trial.

``--pick "max val/acc where model/params <= 20000 and model/latency_ms <= 0.05"`` (``--refit-best``,
``trainlab confirm``, ``trainlab reproduce study:NAME``): among the Pareto trials that satisfy every
``where`` condition, the one with the highest (``max``) or lowest (``min``) value of the metric; of
tied trials the earliest (lowest trial number) wins. Metrics are the study's objectives and constrained
metrics. ``trainlab confirm`` takes the top-k in that order.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any

from trainlab.errors import ConfigError

PARETO_TAG = "trainlab.pareto"
VALUES_TAG = "trainlab.values"  # on trial runs: JSON of the values the pick reads
_RULE = re.compile(r"^\s*(max|min)\s+(\S+)(?:\s+where\s+(.+?))?\s*$", re.I)
_CONDITION = re.compile(r"^\s*(\S+?)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_OPERATORS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
EXAMPLE = '"max val/acc where model/params <= 20000"'


@dataclass(frozen=True)
class PickRule:
    text: str
    goal: str  # max | min
    metric: str
    conditions: tuple[tuple[str, str, float], ...]  # (metric, operator, bound)

    @property
    def direction(self) -> str:
        return "maximize" if self.goal == "max" else "minimize"

    def satisfied_by(self, values: dict[str, float]) -> bool:
        return all(_OPERATORS[op](values[metric], bound) for metric, op, bound in self.conditions)


@dataclass
class Candidate:
    """A Pareto trial as the pick sees it: its number, its values, and whatever the caller needs back."""

    number: int
    values: dict[str, float]
    ref: Any = None


def parse_pick(text: str, metrics: list[str]) -> PickRule:
    """``text`` as a :class:`PickRule` over ``metrics`` (the study's objectives and constrained metrics)."""
    match = _RULE.match(text or "")
    if not match:
        raise ConfigError("--pick", text, f"a rule such as {EXAMPLE} (max|min METRIC [where METRIC <= NUMBER [and ...]])")
    goal, metric, where = match.group(1).lower(), match.group(2), match.group(3)
    conditions = []
    for part in re.split(r"\s+and\s+", where, flags=re.I) if where else []:
        found = _CONDITION.match(part)
        if not found:
            raise ConfigError("--pick", text, f"conditions such as 'model/params <= 20000' joined by 'and' (not {part.strip()!r})")
        conditions.append((found.group(1), found.group(2), float(found.group(3))))
    for name in [metric, *(c[0] for c in conditions)]:
        if name not in metrics:
            raise ConfigError("--pick", text, f"metrics of the study: {', '.join(metrics)} (not {name})")
    return PickRule(text, goal, metric, tuple(conditions))


def rank(rule: PickRule, candidates: list[Candidate]) -> list[Candidate]:
    """The candidates meeting the rule's conditions, best first (ties: the earliest trial first)."""
    sign = -1.0 if rule.goal == "max" else 1.0
    usable = [c for c in candidates if all(m in c.values for m in [rule.metric, *(x[0] for x in rule.conditions)])]
    chosen = [c for c in usable if rule.satisfied_by(c.values) and math.isfinite(c.values[rule.metric])]
    return sorted(chosen, key=lambda c: (sign * c.values[rule.metric], c.number))


def choose(rule: PickRule, candidates: list[Candidate]) -> Candidate:
    """The trial the rule picks among ``candidates``; ConfigError when none meets its conditions."""
    ranked = rank(rule, candidates)
    if ranked:
        return ranked[0]
    ranges = "; ".join(
        f"{m} {min(c.values[m] for c in candidates):.6g}..{max(c.values[m] for c in candidates):.6g}"
        for m in sorted({x[0] for x in rule.conditions})
        if all(m in c.values for c in candidates)
    )
    raise ConfigError("--pick", rule.text, f"conditions that one of the {len(candidates)} Pareto trial(s) meets", hint=f"on the front: {ranges}" if ranges else None)


def pick_metrics(spec) -> list[str]:
    """What a pick may name: the objectives, then the constrained metrics."""
    return list(dict.fromkeys(spec.metrics + [c.metric for c in spec.constraints]))


def is_feasible(trial) -> bool:
    return all(value <= 0 for value in trial.constraints.values())


def pareto_trials(study) -> list:
    """The study's Pareto trials by trial number (Optuna's ``best_trials``; constraints respected)."""
    from trainlab.studies.report import best_trial

    if len(study.directions) == 1:
        best = best_trial(study)
        return [best] if best is not None else []
    return sorted(study.best_trials, key=lambda t: t.number)


def trial_values_of(trial, spec) -> dict[str, float]:
    """The values a trial scored: every objective and constrained metric (single objective: its value)."""
    from trainlab.studies.trial import VALUES_ATTR

    values = trial.user_attrs.get(VALUES_ATTR)
    if values:
        return dict(values)
    return {spec.metric: trial.value} if trial.values else {}


def pareto_candidates(study, spec) -> list[Candidate]:
    return [Candidate(t.number, trial_values_of(t, spec), t) for t in pareto_trials(study)]


def require_pick(spec, pick: PickRule | None, what: str) -> None:
    """A multi-objective study has no single best trial: ``what`` needs a rule."""
    if spec.is_multi_objective and pick is None:
        raise ConfigError("--pick", expected=f"a rule choosing among the Pareto trials for {what} (several objectives, no single best), e.g. --pick {EXAMPLE}")
