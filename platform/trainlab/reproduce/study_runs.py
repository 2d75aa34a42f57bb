"""A study as MLflow holds it: the parent run (tag ``trainlab.kind=study``) and its trial runs, ranked.

The layout (shared with ``trainlab study``): the parent carries ``trainlab.study`` (name),
``trainlab.study.metric`` and ``trainlab.study.direction`` (minimize/maximize); each trial is a child run
tagged ``trainlab.kind=trial``, ``trainlab.study``, ``trainlab.trial`` (number). A trial's value is, as
the study's objective, the best epoch value of the metric named by ``trainlab.study.metric``. When the
study has finished, the parent's ``trainlab.study.best_run_id`` names its best trial. A study with several
metrics (parent tag ``trainlab.study.metrics``) has no best trial: ``--pick RULE`` chooses among its Pareto
trials (runs tagged ``trainlab.pareto=true``) with :mod:`trainlab.studies.pareto`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

from trainlab.contract import best_by_direction
from trainlab.errors import ConfigError

STUDY_PREFIX = "study:"


@dataclass
class StudyRuns:
    name: str
    parent: Any  # mlflow.entities.Run
    metric: str
    direction: str
    trials: list[Any]  # finished trial runs with a finite value, best first
    values: dict[str, float]  # run id -> value

    def value(self, run) -> float:
        return self.values[run.info.run_id]

    @property
    def objectives(self) -> dict[str, str]:
        """Every objective, metric -> direction (one for a single-objective study)."""
        return json.loads(self.parent.data.tags.get("trainlab.study.metrics") or "{}") or {self.metric: self.direction}

    @property
    def pick_metrics(self) -> list[str]:
        constrained = json.loads(self.parent.data.tags.get("trainlab.study.constraints") or "{}")
        return list(dict.fromkeys([*self.objectives, *constrained]))


def picked(client, study: StudyRuns, text: str | None, what: str) -> StudyRuns | None:
    """With a ``--pick`` rule: the study's Pareto trials that meet it, ranked by it (the rule's metric is
    then the study's metric). None without a rule; a multi-objective study needs one (ConfigError)."""
    from trainlab.studies.pareto import EXAMPLE, PARETO_TAG, VALUES_TAG, Candidate, choose, parse_pick, rank

    if text is None:
        if len(study.objectives) > 1:
            raise ConfigError("--pick", expected=f"a rule choosing among the Pareto trials of study {study.name} for {what} (several objectives, no single best), e.g. --pick {EXAMPLE}")
        return None
    rule = parse_pick(text, study.pick_metrics)
    if len(study.objectives) > 1:
        front = [r for r in study.trials if r.data.tags.get(PARETO_TAG) == "true"]
    else:
        best = study.parent.data.tags.get("trainlab.study.best_run_id")
        front = [r for r in study.trials if r.info.run_id == best] or study.trials[:1]
    candidates = [
        Candidate(int(r.data.tags.get("trainlab.trial", -1)), json.loads(r.data.tags.get(VALUES_TAG) or "{}") or {study.metric: study.value(r)}, r)
        for r in front
    ]
    choose(rule, candidates)  # none meets the rule: one line naming the front's ranges
    ranked = [c.ref for c in rank(rule, candidates)]
    values = {r.info.run_id: objective(client, r.info.run_id, rule.metric, rule.direction) for r in ranked}
    return replace(study, metric=rule.metric, direction=rule.direction, trials=ranked, values=values)


def objective(client, run_id: str, metric: str, direction: str) -> float:
    """The best epoch value of ``metric`` in run ``run_id`` (NaN when never logged), as a study scores a trial."""
    values = [m.value for m in client.get_metric_history(run_id, metric) if math.isfinite(m.value)]
    if not values:
        return math.nan
    return best_by_direction(values, direction)


def find_study(client, name: str, experiment: str | None = None) -> StudyRuns:
    """The study's latest parent run and its finished trials ranked by the study metric; ConfigError if absent."""
    experiment_ids = _experiment_ids(client, experiment)
    parents = [r for r in _search(client, experiment_ids, "study") if r.data.tags.get("trainlab.study") == name]
    if not parents:
        known = sorted({r.data.tags.get("trainlab.study", "?") for r in _search(client, experiment_ids, "study")})
        raise ConfigError("STUDY", name, f"a study recorded in {client.tracking_uri} ({', '.join(known) or 'none yet'})")
    parent = max(parents, key=lambda r: r.info.start_time or 0)
    tags = parent.data.tags
    metric = tags.get("trainlab.study.metric")
    direction = tags.get("trainlab.study.direction", "minimize")
    if not metric or direction not in ("minimize", "maximize"):
        raise ConfigError(f"study {name}", expected="parent run tags trainlab.study.metric and trainlab.study.direction (minimize|maximize)")
    trials = [
        r
        for r in _search(client, [parent.info.experiment_id], "trial")
        if r.data.tags.get("trainlab.study") == name and r.info.status == "FINISHED" and metric in r.data.metrics
    ]
    values = {r.info.run_id: objective(client, r.info.run_id, metric, direction) for r in trials}
    trials = [r for r in trials if math.isfinite(values[r.info.run_id])]
    trials.sort(key=lambda r: values[r.info.run_id], reverse=direction == "maximize")
    return StudyRuns(name, parent, metric, direction, trials, values)


def resolve_run_reference(client, reference: str, pick: str | None = None) -> str:
    """A run id, or ``study:NAME`` for the best finished trial of study NAME (or the Pareto trial ``pick`` chooses)."""
    if not reference.startswith(STUDY_PREFIX):
        if pick is not None:
            raise ConfigError("--pick", pick, "a study reference as RUN_ID (study:NAME) to pick a trial of")
        return reference
    study = find_study(client, reference[len(STUDY_PREFIX) :])
    chosen = picked(client, study, pick, "reproduce")
    if chosen is not None:
        return chosen.trials[0].info.run_id
    best = study.parent.data.tags.get("trainlab.study.best_run_id")  # the study's own word, once it has finished
    if best:
        return best
    if not study.trials:
        raise ConfigError("RUN_ID", reference, f"a study with a finished trial that logged {study.metric}")
    return study.trials[0].info.run_id


def _experiment_ids(client, experiment: str | None) -> list[str]:
    if experiment is None:
        return [e.experiment_id for e in client.search_experiments()]
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = [e.name for e in client.search_experiments()]
        raise ConfigError("--experiment", experiment, f"an existing experiment ({', '.join(names) or 'none yet'})")
    return [found.experiment_id]


def _search(client, experiment_ids: list[str], kind: str) -> list[Any]:
    if not experiment_ids:
        return []
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string=f"tags.`trainlab.kind` = '{kind}'", max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs
