"""The ``study`` section of an experiment file, validated before any study or run exists."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from trainlab.config.experiment import Experiment, get_dotted
from trainlab.errors import ConfigError
from trainlab.studies.devices import check_trial_launchable
from trainlab.studies.objectives import Constraint, Objective, check_sampler_and_pruner, parse_constraints, parse_objectives
from trainlab.studies.pruners import PRUNERS, build_pruner
from trainlab.studies.samplers import SAMPLERS, build_sampler
from trainlab.studies.search_space import SearchSpace, apply_params, parse_search_space

STUDY_KEYS = ("name", "metric", "direction", "metrics", "constraints", "n_trials", "timeout", "sampler", "pruner", "retry_failed", "jobs")
DEFAULT_SAMPLER = "tpe"
DEFAULT_PRUNER = "median"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")
_MISSING = object()


@dataclass(frozen=True)
class StudySpec:
    """What to optimise and how: metric, direction, budget, sampler, pruner and the search space.

    Example experiment-file sections::

        study:
          metric: val/acc            # default: the file's monitor, else the model's (val/loss, val/acc, ...)
          direction: maximize        # default: that monitor's mode
          n_trials: 20               # and/or timeout: 10m
          sampler: {type: tpe, seed: 42}
          pruner: {type: median, n_startup_trials: 5, n_warmup_steps: 2}
          # or several objectives, with constraints (trainlab.studies.objectives):
          # metrics: {val/acc: maximize, model/params: minimize}
          # constraints: {model/params: "<= 50000"}
        search_space:
          model.init_args.dropout: {low: 0.0, high: 0.5}
    """

    name: str
    metric: str
    direction: str
    n_trials: int | None
    timeout: float | None
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    retry_failed: int
    space: SearchSpace
    experiment_name: str = "trainlab"
    max_epochs: int | None = None
    objectives: tuple[Objective, ...] = ()  # every objective in order; the first is metric/direction
    constraints: tuple[Constraint, ...] = ()
    jobs: int | str = 1  # worker processes: a number, or "auto" (see trainlab.studies.worker.auto_jobs); --jobs wins

    @property
    def is_multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def metrics(self) -> list[str]:
        return [objective.metric for objective in self.objectives] or [self.metric]

    @property
    def directions(self) -> list[str]:
        return [objective.direction for objective in self.objectives] or [self.direction]

    @property
    def measures(self) -> list[str]:
        """The model measures (``model/params``, ``model/latency_ms``) its objectives and constraints need."""
        from trainlab.training.measurements import MEASURES

        named = self.metrics + [constraint.metric for constraint in self.constraints]
        return [measure for measure in MEASURES if measure in named]


def load_study_spec(
    experiment: Experiment,
    *,
    n_trials: int | None = None,
    timeout: str | float | None = None,
    name: str | None = None,
    check_run: bool = True,
) -> StudySpec:
    """Validate the study sections of ``experiment`` (command-line values win over the file's).

    With ``check_run`` every sub-space is applied to the run config at both ends of every range and
    resolved, so a value the model or optimizer rejects is reported now, with its key, not at trial 7.
    """
    from trainlab.config import resolve_run_config

    section = experiment.study or {}
    if not isinstance(section, dict):
        raise ConfigError("study", section, "a mapping with metric, direction, n_trials, sampler, pruner")
    unknown = sorted(set(section) - set(STUDY_KEYS))
    if unknown:
        raise ConfigError(f"study.{unknown[0]}", expected=f"one of {', '.join(STUDY_KEYS)}")
    if experiment.search_space is None:
        raise ConfigError("search_space", expected="a section listing the config keys to search, e.g. model.init_args.dropout: {low: 0.0, high: 0.5}")

    base = resolve_run_config(experiment.run)
    check_trial_launchable(base.document["trainer"])
    objectives = parse_objectives(section)
    constraints = parse_constraints(section.get("constraints"))
    if objectives:
        metric, direction = _metric_and_direction({"metric": objectives[0].metric, "direction": objectives[0].direction}, base.document)
    else:
        metric, direction = _metric_and_direction(section, base.document)
        objectives = (Objective(metric, direction),)
    budget_trials = _trial_count(n_trials if n_trials is not None else section.get("n_trials"), "--n-trials" if n_trials is not None else "study.n_trials")
    budget_time = _duration(timeout if timeout is not None else section.get("timeout"), "--timeout" if timeout is not None else "study.timeout")
    if budget_trials is None and budget_time is None:
        raise ConfigError("study.n_trials", expected="a number of trials (or a time budget: study.timeout, --timeout)")
    retry = section.get("retry_failed", 0)
    if not isinstance(retry, int) or isinstance(retry, bool) or retry < 0:
        raise ConfigError("study.retry_failed", retry, "an integer >= 0 (how many times to re-run a failed trial)")
    jobs = section.get("jobs", 1)
    if jobs != "auto" and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
        raise ConfigError("study.jobs", jobs, "an integer >= 1, or auto (one worker per CPU core, or per GPU slot)")
    study_name = name or section.get("name") or base.tracking["experiment"]
    if not isinstance(study_name, str) or not study_name.strip():
        raise ConfigError("study.name", study_name, "a non-empty name")

    space = parse_search_space(experiment.search_space)
    # Optuna cannot prune several objectives: their default pruner is none, any other is refused.
    default_pruner = "none" if len(objectives) > 1 else DEFAULT_PRUNER
    sampler = _component(section.get("sampler", DEFAULT_SAMPLER), "study.sampler", SAMPLERS)
    pruner = _component(section.get("pruner", default_pruner), "study.pruner", PRUNERS)
    check_sampler_and_pruner(objectives, constraints, sampler["type"], pruner["type"])
    spec = StudySpec(
        name=study_name,
        metric=metric,
        direction=direction,
        n_trials=budget_trials,
        timeout=budget_time,
        sampler=sampler,
        pruner=pruner,
        retry_failed=retry,
        space=space,
        experiment_name=base.tracking["experiment"],
        max_epochs=base.document["trainer"].get("max_epochs"),
        objectives=objectives,
        constraints=constraints,
        jobs=jobs,
    )
    build_sampler(spec.sampler, space)
    build_pruner(spec.pruner, spec.max_epochs)
    if check_run:
        check_space_against_run(space, experiment.run)
    return spec


def check_space_against_run(space: SearchSpace, run: dict[str, Any]) -> None:
    """Resolve the run config with every sub-space at both ends of its ranges; name the entry that breaks it."""
    from trainlab.config import resolve_run_config

    for values, where in space.probes():
        try:
            document = resolve_run_config(apply_params(run, values)).document
            check_trial_launchable(document["trainer"])
        except ConfigError as exc:
            searched = any(exc.key == path or exc.key.startswith(path + ".") for path in values)
            hint = "; ".join(part for part in (exc.hint, f"when {where}" if where else None) if part)
            raise ConfigError(f"search_space.{exc.key}" if searched else exc.key, exc.value, exc.expected, hint or None) from None
        for path in values:
            if get_dotted(document, path, _MISSING) is _MISSING:
                raise ConfigError(f"search_space.{path}", expected="a key of the resolved run config (see a run's config.yaml)")


def _metric_and_direction(section: dict[str, Any], document: dict[str, Any]) -> tuple[str, str]:
    """The study's objective: ``study.metric``/``direction``, else the run's monitor (the file's ``monitor``,
    else the model's declared one), decided by :func:`trainlab.contract.monitored_metric`."""
    from trainlab.class_paths import find_class
    from trainlab.contract import monitored_metric

    metric = section.get("metric")
    if metric is not None and (not isinstance(metric, str) or not metric):
        raise ConfigError("study.metric", metric, "a metric name the model logs each epoch, e.g. val/acc")
    if isinstance(metric, str) and metric.startswith("test/"):
        raise ConfigError("study.metric", metric, "a validation metric such as val/acc (test metrics must not steer the search)")
    monitor = monitored_metric(find_class(document["model"]["class_path"]), document, study=section)
    if monitor.metric is None:
        raise ConfigError("study.metric", expected="the name of a metric the model logs each epoch, e.g. val_acc (the model declares no monitor)")
    return monitor.metric, monitor.direction


def _component(value: Any, key: str, known: dict[str, str]) -> dict[str, Any]:
    settings = {"type": value} if isinstance(value, str) else value
    if not isinstance(settings, dict):
        raise ConfigError(key, value, f"a name ({', '.join(known)}) or a mapping with type and options")
    settings = {"type": DEFAULT_SAMPLER if key.endswith("sampler") else DEFAULT_PRUNER, **settings}
    if settings["type"] not in known:
        raise ConfigError(f"{key}.type", settings["type"], f"one of {', '.join(known)}")
    seed = settings.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ConfigError(f"{key}.seed", seed, "an integer")
    return settings


def _trial_count(value: Any, key: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(key, value, "an integer >= 1")
    return value


def _duration(value: Any, key: str) -> float | None:
    """Seconds, or a number with s/m/h: ``90``, ``90s``, ``10m``, ``2h``."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ConfigError(key, value, "a duration such as 600, 90s, 10m or 2h")
        seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if seconds <= 0:
        raise ConfigError(key, value, "a duration > 0")
    return seconds
