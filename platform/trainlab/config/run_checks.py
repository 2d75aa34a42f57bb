"""Checks on a run config that jsonargparse cannot make, each naming the key, the value and what is accepted.

:func:`check_run_sections` runs before jsonargparse: a section given the wrong shape (``trainer: 5``, a
misspelled ``init_arg``) would otherwise surface as an AttributeError or as jsonargparse's union tree.
:func:`check_run_plan` runs on the resolved config: values Lightning accepts but that leave a run with
nothing to train or validate on, which would otherwise end as a FAILED run in MLflow.
"""

from __future__ import annotations

import difflib
from typing import Any

from trainlab.errors import ConfigError

CLASS_SECTIONS = ("model", "data", "optimizer", "lr_scheduler")
MAPPING_SECTIONS = ("trainer", "tracking", "diagnostics")
CLASS_KEYS = ("class_path", "init_args", "dict_kwargs")
SEED_MAX = 2**32 - 1  # numpy's seed range, which Lightning's seed_everything enforces


def check_run_sections(run: dict[str, Any]) -> None:
    """The run sections have the shapes an experiment file allows; the seed is in numpy's range."""
    for section in CLASS_SECTIONS:
        value = run.get(section)
        if value is None or isinstance(value, str):
            continue  # a bare class name is LightningCLI's shorthand for {class_path: NAME}
        if not isinstance(value, dict):
            raise ConfigError(section, value, f"a mapping with class_path and init_args (or a class name), e.g. {section}: {{class_path: NAME, init_args: {{...}}}}")
        for key, inner in value.items():
            if key not in CLASS_KEYS:
                close = difflib.get_close_matches(str(key), CLASS_KEYS, n=1)
                raise ConfigError(
                    f"{section}.{key}", inner, f"only class_path and init_args inside {section}",
                    hint=f"did you mean '{close[0]}'?" if close else f"arguments of the class go under {section}.init_args",
                )
        init_args = value.get("init_args")
        if init_args is not None and not isinstance(init_args, dict):
            raise ConfigError(f"{section}.init_args", init_args, "a mapping of the class's arguments, e.g. {name: value}")
    for section in MAPPING_SECTIONS:
        value = run.get(section)
        if value is not None and not isinstance(value, dict):
            raise ConfigError(section, value, f"a mapping of {section} settings, e.g. {section}.KEY=VALUE")
    experiment = (run.get("tracking") or {}).get("experiment", "default")
    if not isinstance(experiment, str) or not experiment.strip():
        raise ConfigError("tracking.experiment", experiment, "a non-empty MLflow experiment name")
    seed = run.get("seed_everything")
    if seed is not None and not isinstance(seed, bool):
        if not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
            raise ConfigError("seed_everything", seed, f"an integer from 0 to {SEED_MAX}, or true (draw one) or false (no seeding)")


def check_run_plan(document: dict[str, Any]) -> None:
    """A resolved run trains at least one epoch or step, and validates on a non-empty split unless told not to.

    Refused rather than supported: a run that trains nothing or cannot pick a checkpoint would end FAILED
    (or FINISHED with untrained weights) and look like a result in MLflow.
    """
    trainer = document.get("trainer") or {}
    for key in ("max_epochs", "max_steps"):
        value = trainer.get(key)
        if value == 0 and not isinstance(value, bool):
            raise ConfigError(f"trainer.{key}", value, "an integer >= 1, or -1 for no limit (a run with 0 trains nothing)")
    limit_val = trainer.get("limit_val_batches")
    validates = not (limit_val == 0 and not isinstance(limit_val, bool))
    if not validates and trainer.get("enable_checkpointing") is not False:
        raise ConfigError(
            "trainer.limit_val_batches", limit_val,
            "a value > 0, or 0 together with trainer.enable_checkpointing=false (the checkpoint is chosen by a validation metric)",
        )
    val_fraction = ((document.get("data") or {}).get("init_args") or {}).get("val_fraction")
    if validates and val_fraction == 0 and not isinstance(val_fraction, bool):
        raise ConfigError(
            "data.init_args.val_fraction", val_fraction,
            "a fraction in (0, 1): the run validates on it (0 only with trainer.limit_val_batches=0 and trainer.enable_checkpointing=false)",
        )
