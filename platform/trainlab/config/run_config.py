"""Validation and resolution of a run config with jsonargparse, the machinery LightningCLI uses."""

from __future__ import annotations

import copy
import functools
import json
import random
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import yaml

from trainlab.config.import_paths import check_class_section
from trainlab.config.parse_errors import translate
from trainlab.config.run_checks import check_run_plan, check_run_sections
from trainlab.errors import ConfigError

# Trainer defaults that differ from Lightning's: determinism on (warn, not fail, for ops that have no
# deterministic kernel) so the same file gives the same metrics; logger and checkpointing are ours.
TRAINER_DEFAULTS = {"deterministic": "warn", "max_epochs": 10}
_POSITIVE_OPTIMIZER_ARGS = ("lr",)
_NON_NEGATIVE_OPTIMIZER_ARGS = ("weight_decay", "momentum", "alpha", "eps", "lr_decay")


@dataclass(frozen=True, init=False)
class RunConfig:
    """A validated, fully resolved run config: every default filled, every class path complete.

    Frozen: ``document`` hands out a deep copy of the plain dict it holds, so no caller can change a
    validated config behind another's back; :meth:`with_values` makes a new one. Written as YAML, the
    document is a valid experiment file that reproduces the run.

    Example::

        config.with_values({"model.init_args.num_classes": 10}).document["model"]["init_args"]["num_classes"]  # 10
    """

    _document: dict[str, Any] = field(repr=False)

    def __init__(self, document: dict[str, Any]) -> None:
        object.__setattr__(self, "_document", copy.deepcopy(document))

    @property
    def document(self) -> dict[str, Any]:
        return copy.deepcopy(self._document)

    @property
    def seed(self) -> Optional[int]:
        return self._document.get("seed_everything")

    @property
    def tracking(self) -> dict[str, Any]:
        return copy.deepcopy(self._document["tracking"])

    def section(self, name: str) -> Any:
        """A copy of one top-level section (``trainer``, ``model``, ...); None when absent."""
        return copy.deepcopy(self._document.get(name))

    def with_values(self, values: dict[str, Any]) -> "RunConfig":
        """A new config with the dotted keys in ``values`` set (``{"trainer.max_epochs": 3}``)."""
        from trainlab.config.experiment import set_dotted

        document = self.document
        for key, value in values.items():
            set_dotted(document, key, value)
        return RunConfig(document)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self._document, sort_keys=False)


@functools.lru_cache(maxsize=1)
def run_parser():
    """The jsonargparse parser for run configs. Importing ``models``/``datamodules`` registers their short names."""
    import lightning as L
    import torch
    from lightning.pytorch.cli import LightningArgumentParser, LRSchedulerTypeTuple

    from trainlab.config.monitor_spec import MonitorSpec
    from trainlab.config.tracking_spec import TrackingSpec
    from trainlab.diagnostics.spec import DiagnosticsSpec

    parser = LightningArgumentParser(exit_on_error=False, parser_mode="yaml")
    parser.add_argument("--seed_everything", type=Union[bool, int], default=True)
    _add_model_and_data(parser)
    parser.add_class_arguments(L.Trainer, "trainer", instantiate=False, fail_untyped=False, skip={"logger"})
    parser.set_defaults({f"trainer.{key}": value for key, value in TRAINER_DEFAULTS.items()})
    parser.add_optimizer_args((torch.optim.Optimizer,), nested_key="optimizer")
    parser.add_lr_scheduler_args(LRSchedulerTypeTuple, nested_key="lr_scheduler")
    parser.add_class_arguments(TrackingSpec, "tracking")
    parser.add_class_arguments(MonitorSpec, "monitor")
    parser.add_argument("--test", type=bool, default=True)  # false: skip trainer.test after fit
    parser.add_argument("--measure", type=Optional[list[str]], default=None)  # model/params, model/latency_ms at fit end
    parser.add_class_arguments(DiagnosticsSpec, "diagnostics")
    return parser


@functools.lru_cache(maxsize=1)
def instance_parser():
    """The ``model`` and ``data`` sections of :func:`run_parser` alone, to instantiate a resolved config's
    classes: a third of the full parser's time per parse (it also fills the Trainer's ~40 defaults), paid
    by every trial of a study."""
    from lightning.pytorch.cli import LightningArgumentParser

    return _add_model_and_data(LightningArgumentParser(exit_on_error=False, parser_mode="yaml"))


def _add_model_and_data(parser):
    import trainlab.datamodules  # noqa: F401  (short class names resolve among imported subclasses)
    import lightning as L
    import trainlab.models  # noqa: F401

    parser.add_lightning_class_args(L.LightningModule, "model", subclass_mode=True, required=True)
    parser.add_lightning_class_args(L.LightningDataModule, "data", subclass_mode=True, required=True)
    return parser


def resolve_run_config(run: dict[str, Any]) -> RunConfig:
    """Validate ``run`` (the run sections of an experiment file) and fill every default.

    Raises :class:`ConfigError` with the key path of the first problem; creates nothing.
    """
    for required in ("model", "data"):
        if not run.get(required):
            raise ConfigError(required, expected="a section with class_path (and init_args), e.g. class_path: MLPClassifier")
    check_run_sections(run)
    for required in ("model", "data"):
        check_class_section(required, run[required])
    _check_monitor_and_test(run)
    parser = run_parser()
    try:
        namespace = parser.parse_object(copy.deepcopy(run))
    except Exception as exc:  # jsonargparse raises ArgumentError (and occasionally ValueError/TypeError)
        raise translate(str(exc), run) from None
    # Through JSON, not YAML: the same plain document (tested), a third of the time; every trial resolves one.
    document = json.loads(parser.dump(namespace, skip_validation=True, format="json"))
    for key in TRAINER_DEFAULTS:
        # The dump leaves out None values; a null the file wrote (LightningCLI's max_epochs: null) must stay
        # null in the recorded config, or resolving that config again would bring trainlab's default back.
        if namespace.get(f"trainer.{key}", 0) is None:
            document["trainer"][key] = None
    if document.get("test") is not False:
        document.pop("test", None)  # the default, left unsaid: configs recorded before the key existed resolve the same
    if not document.get("measure"):
        document.pop("measure", None)  # likewise: nothing measured unless asked
    monitor = document.pop("monitor", None) or {}
    if monitor.get("metric"):  # no section when the file names no metric: the model's contract decides
        from trainlab.contract import inferred_mode

        document["monitor"] = {"metric": monitor["metric"], "mode": monitor.get("mode") or inferred_mode(monitor["metric"])}
    check_run_plan(document)
    _check_optimization(document)
    _check_optimization_wiring(document)
    _check_diagnostics(document)
    seed = document.get("seed_everything")
    if seed is True:
        # LightningCLI semantics: true means "pick a seed"; record it so the run can be repeated. Ranks of a
        # process group get the resolved config from their launcher, so they never draw one of their own.
        document["seed_everything"] = random.randint(0, 2**31 - 1)
    elif seed is False:
        document["seed_everything"] = None
    return RunConfig(document)


def _check_optimization_wiring(document: dict[str, Any]) -> None:
    """Refuse now, before any run or study exists, what building the model would refuse: an optimizer section
    for a model with its own configure_optimizers, or none for a model without (LightningCLI's rule)."""
    from trainlab.class_paths import find_class
    from trainlab.contract import accepts_optimization, injects_optimization

    model = find_class(document["model"]["class_path"])
    if model is not None and not accepts_optimization(model):
        injects_optimization(model, document.get("optimizer"), document.get("lr_scheduler"))


def _check_monitor_and_test(run: dict[str, Any]) -> None:
    """The ``monitor`` and ``test`` sections, with messages that say what is accepted (jsonargparse's do not)."""
    monitor = run.get("monitor")
    if monitor is not None:
        if not isinstance(monitor, dict):
            raise ConfigError("monitor", monitor, "a mapping such as {metric: val_acc, mode: max} (mode optional)")
        unknown = sorted(set(monitor) - {"metric", "mode"})
        if unknown:
            raise ConfigError(f"monitor.{unknown[0]}", expected="metric and mode only")
        if monitor.get("metric") is not None and (not isinstance(monitor["metric"], str) or not monitor["metric"]):
            raise ConfigError("monitor.metric", monitor["metric"], "the name of a metric the model logs each epoch, e.g. val_acc")
        if monitor.get("mode") not in (None, "min", "max"):
            raise ConfigError("monitor.mode", monitor["mode"], "min or max (left out: inferred from the name)")
    measure = run.get("measure")
    if measure is not None:
        from trainlab.training.measurements import MEASURES

        if not isinstance(measure, list) or any(name not in MEASURES for name in measure):
            raise ConfigError("measure", measure, f"a list of {', '.join(MEASURES)} (logged once when fit ends)")
    if "test" in run and not isinstance(run["test"], bool):
        raise ConfigError("test", run["test"], "true or false (false: no test after training)")


def _check_optimization(document: dict[str, Any]) -> None:
    """Catch bad optimiser/scheduler values now, not at the first training step after the run exists."""
    import torch
    from lightning.pytorch.cli import instantiate_class

    optimizer_config = document.get("optimizer")
    if optimizer_config:
        init = optimizer_config.get("init_args") or {}
        for name in _POSITIVE_OPTIMIZER_ARGS:
            if isinstance(init.get(name), (int, float)) and init[name] <= 0:
                raise ConfigError(f"optimizer.init_args.{name}", init[name], "a number > 0")
        for name in _NON_NEGATIVE_OPTIMIZER_ARGS:
            if isinstance(init.get(name), (int, float)) and init[name] < 0:
                raise ConfigError(f"optimizer.init_args.{name}", init[name], "a number >= 0")
    probe = torch.nn.Parameter(torch.zeros(1))
    try:
        optimizer = instantiate_class([probe], optimizer_config) if optimizer_config else torch.optim.Adam([probe])
    except (ValueError, TypeError) as exc:
        raise ConfigError("optimizer.init_args", expected="values the optimizer accepts", hint=str(exc)) from None
    clip = (document.get("trainer") or {}).get("gradient_clip_val")
    if isinstance(clip, (int, float)) and clip < 0:
        raise ConfigError("trainer.gradient_clip_val", clip, "a number >= 0 (0 or null: no clipping)")
    scheduler_config = document.get("lr_scheduler")
    if scheduler_config:
        try:
            instantiate_class(optimizer, _one_cycle_probe(scheduler_config))
        except (ValueError, TypeError) as exc:
            raise ConfigError("lr_scheduler.init_args", expected="values the scheduler accepts", hint=str(exc)) from None


def _one_cycle_probe(config: dict[str, Any]) -> dict[str, Any]:
    """OneCycleLR may leave out total_steps: the task fills it from the trainer (models/task.py); probe with a stand-in."""
    init = config.get("init_args") or {}
    if not config.get("class_path", "").endswith("OneCycleLR") or init.get("total_steps") or init.get("epochs"):
        return config
    return {**config, "init_args": {**init, "total_steps": 1}}


def _check_diagnostics(document: dict[str, Any]) -> None:
    """jsonargparse lets a ``diagnostics`` (sub)section that is not a mapping through; the spec refuses it."""
    from trainlab.diagnostics.spec import DiagnosticsSpec

    DiagnosticsSpec.from_document(document.get("diagnostics"))
