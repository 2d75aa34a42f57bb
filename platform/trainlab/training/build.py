"""Instantiating what a run config describes: datamodule, model, trainer callbacks (see ``prepare.py``).

Everything here runs before the MLflow run exists, so bad values surface as ConfigError and leave no trace.
"""

from __future__ import annotations

import functools
import types
from typing import Any

from trainlab.class_paths import import_class, init_parameters
from trainlab.config import RunConfig
from trainlab.config.parse_errors import translate
from trainlab.contract import Monitored, accepts_optimization, data_facts, injects_optimization, monitored_metric
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
    from trainlab.config.run_config import instance_parser

    parser = instance_parser()
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
    wire_optimization(model, config)
    return model


def wire_optimization(model, config: RunConfig) -> None:
    """Hand the file's ``optimizer``/``lr_scheduler`` sections to the model, and make the run's monitored
    metric the one a trainlab task's ReduceLROnPlateau watches.

    A model with trainlab's ``set_optimization`` receives the sections. Any other model gets LightningCLI's
    semantics: the sections are injected as its ``configure_optimizers`` when it does not override that
    method (through ``LightningCLI.configure_optimizers``, as LightningCLI does), and refused when it does.
    """
    monitor = monitored_metric(model, config)
    if isinstance(model, Monitored) and monitor.metric:
        model.monitor, model.monitor_mode = monitor.metric, monitor.mode  # its scheduler follows the run's monitor
    optimizer, lr_scheduler = config.section("optimizer"), config.section("lr_scheduler")
    if accepts_optimization(model):
        model.set_optimization(optimizer, lr_scheduler)
        return
    if not injects_optimization(model, optimizer, lr_scheduler):
        return
    # Lazy, unlike LightningCLI: each fit builds a fresh optimizer on the parameters as they are then.
    configure = functools.partial(_configure_optimizers, optimizer=optimizer, lr_scheduler=lr_scheduler, monitor=monitor.metric)
    functools.update_wrapper(configure, _configure_optimizers)  # Lightning's is_overridden reads __wrapped__/__code__
    model.configure_optimizers = types.MethodType(configure, model)


def _configure_optimizers(module, optimizer: dict[str, Any], lr_scheduler: dict[str, Any] | None, monitor: str | None):
    import torch
    from lightning.pytorch.cli import LightningCLI, instantiate_class

    built = instantiate_class(module.parameters(), optimizer)
    scheduler = instantiate_class(built, lr_scheduler) if lr_scheduler else None
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and not getattr(scheduler, "monitor", None):
        if not monitor:  # torch's class has no monitor of its own; Lightning's subclass carries one
            raise ConfigError("lr_scheduler", lr_scheduler.get("class_path"), "a monitored metric to follow", hint="set monitor.metric in the experiment file")
        return {"optimizer": built, "lr_scheduler": {"scheduler": scheduler, "monitor": monitor}}
    return LightningCLI.configure_optimizers(module, built, scheduler)


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
