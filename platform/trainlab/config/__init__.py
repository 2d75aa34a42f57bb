"""Experiment files: load, override, validate, resolve.

An experiment file is LightningCLI's YAML (``seed_everything``, ``model``, ``data``, ``optimizer``,
``lr_scheduler``, ``trainer``) plus trainlab's ``tracking`` section and, for studies, ``study`` and
``search_space``. :func:`resolve_run_config` turns the run part into a :class:`RunConfig` or raises
:class:`trainlab.errors.ConfigError`.
"""

from trainlab.config.experiment import Experiment, apply_overrides, load_experiment
from trainlab.config.run_config import RunConfig, resolve_run_config

__all__ = ["Experiment", "RunConfig", "apply_overrides", "load_experiment", "resolve_run_config"]
