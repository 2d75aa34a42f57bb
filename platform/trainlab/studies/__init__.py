"""Optuna studies over run configs: every trial is a normal tracked run through ``fit_run``.

An experiment file's ``study`` and ``search_space`` sections describe the search
(:class:`StudySpec`, :class:`SearchSpace`); workers (:func:`run_worker`) claim trials from a shared
storage, sample values, train and report; the study is a parent run in MLflow and each trial a child run.
"""

from trainlab.studies.loading import open_study, stored_experiment
from trainlab.studies.search_space import SearchSpace, apply_params, parse_search_space
from trainlab.studies.spec import StudySpec, load_study_spec
from trainlab.studies.storage import default_storage_url, open_storage, resolve_storage_url

__all__ = [
    "SearchSpace",
    "StudySpec",
    "apply_params",
    "default_storage_url",
    "load_study_spec",
    "open_storage",
    "open_study",
    "parse_search_space",
    "resolve_storage_url",
    "stored_experiment",
]
