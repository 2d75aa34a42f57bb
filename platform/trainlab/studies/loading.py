"""Creating or re-opening a study in its storage, with the experiment file stored alongside it.

The whole experiment file is kept in the study's user attrs (``trainlab.experiment``, as YAML text so
every value keeps its type), so any worker on any machine, and any resume, rebuilds the search space,
sampler and pruner from the study itself. Use :func:`stored_experiment` to read it back.
"""

from __future__ import annotations

from typing import Any

import yaml

from trainlab.config.experiment import Experiment
from trainlab.errors import ConfigError
from trainlab.studies.pruners import build_pruner
from trainlab.studies.samplers import build_sampler
from trainlab.studies.spec import StudySpec
from trainlab.secrets import mask_uri
from trainlab.studies.storage import open_storage

EXPERIMENT_ATTR = "trainlab.experiment"
PARENT_RUN_ATTR = "trainlab.parent_run_id"
# Budget settings may change between invocations (--n-trials 30 extends a study); nothing else may.
_BUDGET_KEYS = ("n_trials", "timeout")


def experiment_document(experiment: Experiment) -> dict[str, Any]:
    """The experiment file as one mapping (run sections, study, search_space)."""
    document = dict(experiment.run)
    if experiment.study is not None:
        document["study"] = experiment.study
    if experiment.search_space is not None:
        document["search_space"] = experiment.search_space
    return document


def open_study(storage_url: str, spec: StudySpec, experiment: Experiment):
    """Create the study, or load it when it exists and was made from the same experiment file.

    Returns ``(study, storage)``. A study made from a different file is refused (ConfigError): its
    trials would mix two search spaces.
    """
    import optuna

    from trainlab.studies.report import name_metric

    storage = open_storage(storage_url)
    study = optuna.create_study(
        study_name=spec.name,
        storage=storage,
        directions=spec.directions,
        sampler=build_sampler(spec.sampler, spec.space),
        pruner=build_pruner(spec.pruner, spec.max_epochs),
        load_if_exists=True,
    )
    name_metric(study, spec.metrics)  # optuna-dashboard shows the metrics' names, not "Objective 0"
    document = experiment_document(experiment)
    stored = study.user_attrs.get(EXPERIMENT_ATTR)
    if stored is None:
        study.set_user_attr(EXPERIMENT_ATTR, yaml.safe_dump(document, sort_keys=False))
    else:
        changed = _first_difference(_comparable(yaml.safe_load(stored)), _comparable(document))
        if changed is not None:
            raise ConfigError(
                "--study-name",
                spec.name,
                f"a new study name: study {spec.name!r} in {mask_uri(storage_url)} was made from a different experiment file",
                hint=f"{changed} differs; pass --study-name NEW to start another study",
            )
    return study, storage


def load_existing_study(storage_url: str, study_name: str):
    """``(study, storage)`` for a study that must already exist (workers, re-attaching trials)."""
    import optuna

    storage = open_storage(storage_url)
    return optuna.load_study(study_name=study_name, storage=storage), storage


def stored_experiment(study) -> Experiment:
    """The experiment file the study was created from."""
    return split_experiment(yaml.safe_load(study.user_attrs[EXPERIMENT_ATTR]))


def split_experiment(document: dict[str, Any]) -> Experiment:
    """The inverse of :func:`experiment_document`."""
    run = {key: value for key, value in document.items() if key not in ("study", "search_space")}
    return Experiment(run=run, study=document.get("study"), search_space=document.get("search_space"))


def _comparable(document: dict[str, Any]) -> dict[str, Any]:
    document = dict(document)
    study = dict(document.get("study") or {})
    for key in _BUDGET_KEYS:
        study.pop(key, None)
    document["study"] = study
    return document


def _first_difference(old: Any, new: Any, path: str = "") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            found = _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    return None if old == new else (path or "the file")
