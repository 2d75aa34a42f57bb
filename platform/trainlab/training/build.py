"""Instantiating what a run config describes: datamodule, model, trainer callbacks.

Everything here runs before the MLflow run exists, so bad values surface as ConfigError and leave no trace.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

from trainlab.config import RunConfig
from trainlab.config.parse_errors import translate
from trainlab.errors import ConfigError


def build_datamodule(config: RunConfig):
    """Instantiate and load the data, so a missing dataset is reported before any run is created."""
    from lightning.pytorch.cli import instantiate_class

    section = config.document["data"]
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


def fill_model_shapes(config: RunConfig, datamodule) -> None:
    """Fill ``num_classes``/``input_shape`` (and any other fact the datamodule describes) left unset in the model.

    The filled values go into the resolved config, so the logged ``config.yaml`` states them explicitly.
    """
    describe = getattr(datamodule, "describe", None)
    if describe is None:
        return
    from jsonargparse import ArgumentParser  # noqa: F401  (keeps import order consistent with run_parser)

    model_section = config.document["model"]
    cls = _import_class(model_section["class_path"])
    accepted = _init_parameters(cls)
    init_args = model_section.setdefault("init_args", {}) or {}
    model_section["init_args"] = init_args
    for name, value in describe().items():
        if name in accepted and init_args.get(name) is None:
            init_args[name] = value


def build_model(config: RunConfig):
    """Instantiate the LightningModule (nested class arguments included) and wire its optimisation."""
    from trainlab.config.run_config import run_parser

    parser = run_parser()
    section = config.document["model"]
    try:
        # parse_object converts values in place (ints become PositiveInt); keep the document plain.
        namespace = parser.parse_object(copy.deepcopy({"model": section, "data": config.document["data"]}))
        model = parser.instantiate(namespace)["model"]
    except ConfigError:
        raise
    except Exception as exc:  # jsonargparse wraps the model's own ValueError/TypeError in its message tree
        if isinstance(exc.__cause__, ConfigError):  # a model that names the bad key itself
            raise exc.__cause__ from None
        raise translate(str(exc)) from None
    set_optimization = getattr(model, "set_optimization", None)
    if set_optimization is not None:
        set_optimization(config.document.get("optimizer"), config.document.get("lr_scheduler"))
    elif config.document.get("optimizer") or config.document.get("lr_scheduler"):
        raise ConfigError(
            "optimizer",
            expected="no optimizer section for a model that configures its own optimizers",
            hint=f"{type(model).__name__} is not a trainlab TrainlabTask",
        )
    return model


def build_user_callbacks(config: RunConfig) -> list:
    from lightning.pytorch.cli import instantiate_class

    callbacks = []
    for index, spec in enumerate(config.document["trainer"].get("callbacks") or []):
        try:
            callbacks.append(instantiate_class((), spec) if isinstance(spec, dict) else spec)
        except Exception as exc:
            raise ConfigError(f"trainer.callbacks[{index}]", spec.get("class_path"), "a callback that can be built", hint=str(exc)) from None
    return callbacks


def trainer_arguments(config: RunConfig) -> dict[str, Any]:
    """Trainer keyword arguments from the config, minus what trainlab wires itself (logger, callbacks)."""
    return {key: value for key, value in config.document["trainer"].items() if key not in ("callbacks", "logger")}


def _import_class(class_path: str):
    module, _, name = class_path.rpartition(".")
    return getattr(__import__(module, fromlist=[name]), name)


def _init_parameters(cls) -> set[str]:
    names: set[str] = set()
    for klass in inspect.getmro(cls):
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names.update(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names
