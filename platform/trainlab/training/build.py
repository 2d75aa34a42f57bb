"""Instantiating what a run config describes: datamodule, model, trainer callbacks (see ``prepare.py``).

Everything here runs before the MLflow run exists, so bad values surface as ConfigError and leave no trace.
"""

from __future__ import annotations

from typing import Any

from trainlab.class_paths import import_class, init_parameters
from trainlab.config import RunConfig
from trainlab.config.parse_errors import translate
from trainlab.contract import accepts_optimization, data_facts
from trainlab.errors import ConfigError


def build_datamodule(config: RunConfig):
    """Instantiate and load the data, so a missing dataset is reported before any run is created."""
    from lightning.pytorch.cli import instantiate_class

    section = config.section("data")
    try:
        datamodule = instantiate_class((), section)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError("data.init_args", expected="values the datamodule accepts", hint=str(exc)) from None
    try:
        datamodule.prepare_data()
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError("data", section.get("class_path"), "data that can be loaded", hint=str(exc)) from None
    return datamodule


def with_data_facts(config: RunConfig, datamodule) -> RunConfig:
    """A new config with ``num_classes``/``input_shape`` (any fact ``datamodule.describe()`` states) filled
    into the model's ``__init__`` arguments left unset, so the logged ``config.yaml`` states them explicitly."""
    facts = data_facts(datamodule)
    if not facts:
        return config
    model_section = config.section("model")
    accepted, _ = init_parameters(import_class(model_section["class_path"]))
    init_args = model_section.get("init_args") or {}
    filled = {name: value for name, value in facts.items() if name in accepted and init_args.get(name) is None}
    return config.with_values({f"model.init_args.{name}": value for name, value in filled.items()}) if filled else config


def build_model(config: RunConfig):
    """Instantiate the LightningModule (nested class arguments included) and wire its optimisation."""
    from trainlab.config.run_config import run_parser

    parser = run_parser()
    try:
        # parse_object converts values in place (ints become PositiveInt): it gets copies, the config stays plain.
        namespace = parser.parse_object({"model": config.section("model"), "data": config.section("data")})
        model = parser.instantiate(namespace)["model"]
    except ConfigError:
        raise
    except Exception as exc:  # jsonargparse wraps the model's own ValueError/TypeError in its message tree
        if isinstance(exc.__cause__, ConfigError):  # a model that names the bad key itself
            raise exc.__cause__ from None
        raise translate(str(exc)) from None
    optimizer, lr_scheduler = config.section("optimizer"), config.section("lr_scheduler")
    if accepts_optimization(model):
        model.set_optimization(optimizer, lr_scheduler)
    elif optimizer or lr_scheduler:
        raise ConfigError(
            "optimizer",
            expected="no optimizer section for a model that configures its own optimizers",
            hint=f"{type(model).__name__} is not a trainlab TrainlabTask",
        )
    return model


def build_user_callbacks(config: RunConfig) -> list:
    from lightning.pytorch.cli import instantiate_class

    callbacks = []
    for index, spec in enumerate(config.section("trainer").get("callbacks") or []):
        try:
            callbacks.append(instantiate_class((), spec) if isinstance(spec, dict) else spec)
        except Exception as exc:
            raise ConfigError(f"trainer.callbacks[{index}]", spec.get("class_path"), "a callback that can be built", hint=str(exc)) from None
    return callbacks


def trainer_arguments(config: RunConfig) -> dict[str, Any]:
    """Trainer keyword arguments from the config, minus what trainlab wires itself (logger, callbacks)."""
    return {key: value for key, value in config.section("trainer").items() if key not in ("callbacks", "logger")}
