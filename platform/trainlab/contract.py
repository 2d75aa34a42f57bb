"""What the engine reads from a model (LightningModule) and a datamodule (LightningDataModule), in one place.

Every item is optional: a plain LightningModule and a plain LightningDataModule train, are tracked and
can be searched over as they are. A class that declares an item gets more from trainlab:

==========================  ==============================================================================
model ``monitor``           metric the best checkpoint keeps, the learning-curve plot shows, and a study
                            optimises, unless the experiment file names one (``monitor:``, ``study.metric``);
                            fallback: nothing monitored, the checkpoint keeps the last epoch
model ``monitor_mode``      ``"min"`` or ``"max"`` for ``monitor`` (fallback: inferred from the name)
model ``task_type``         ``"classification"``, ``"segmentation"``, ``"forecasting"``, ...: which test
                            pictures diagnostics may draw (fallback: none)
model ``set_optimization``  receives the experiment file's ``optimizer``/``lr_scheduler`` sections; without
                            it those sections are injected as LightningCLI does when the module does not
                            override ``configure_optimizers``, and refused when it does
model ``test_step``         the test runs on the kept checkpoint; without it (or without a datamodule
                            ``test_dataloader``) the test is skipped and the run says so
datamodule ``describe()``   facts (``num_classes``, ``input_shape``) filled into the model's unset ``__init__``
                            arguments of the same name
datamodule ``fingerprint()``  per-split digests logged as ``data_fingerprint.json`` (reproduce compares them)
datamodule ``class_names``  labels for confusion matrices
==========================  ==============================================================================

See ``docs/extending.md`` for a complete small example of each. The readers below are the only place the
engine looks these items up; :func:`monitored_metric` is where the run's monitored metric is decided.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from trainlab.errors import ConfigError

# Metric names ending in one of these are better when higher; any other name is better when lower.
HIGHER_IS_BETTER = ("acc", "accuracy", "f1", "iou", "dice", "auc", "auroc", "r2", "precision", "recall", "ap")
# ... and of those, the ones that are fractions: an interval around their mean never leaves [0, 1].
FRACTION_METRICS = ("acc", "accuracy", "f1", "iou", "dice", "auc", "auroc", "precision", "recall", "ap")


def metric_range(metric: str) -> tuple[float, float]:
    """The values ``metric`` can take, by its name: ``[0, 1]`` for accuracy, F1, IoU, ...; else unbounded."""
    return (0.0, 1.0) if metric.lower().endswith(FRACTION_METRICS) else (float("-inf"), float("inf"))


@runtime_checkable
class Monitored(Protocol):
    """A model that names the metric it is judged by."""

    monitor: str
    monitor_mode: str  # "min" or "max"


@runtime_checkable
class Typed(Protocol):
    """A model that says which kind of task it solves (its test pictures follow)."""

    task_type: str


@runtime_checkable
class Optimizable(Protocol):
    """A model that builds its optimizer and scheduler from the experiment file's sections."""

    def set_optimization(self, optimizer: dict[str, Any] | None, lr_scheduler: dict[str, Any] | None) -> None: ...


@runtime_checkable
class Described(Protocol):
    """A datamodule that states facts about its data (after ``prepare_data``) the model may need."""

    def describe(self) -> dict[str, Any]: ...


@runtime_checkable
class Fingerprinted(Protocol):
    """A datamodule that can digest each split, so a re-run can tell whether the data changed."""

    def fingerprint(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Monitor:
    """The metric a run watches, and which way is better; ``metric`` None: nothing is monitored (the
    checkpoint keeps the last epoch)."""

    metric: str | None
    mode: str = "min"  # "min" or "max"

    @property
    def direction(self) -> str:
        """Optuna's word for ``mode``."""
        return "maximize" if self.mode == "max" else "minimize"

    def describe(self) -> str:
        """The run's ``trainlab.monitor`` tag: ``val_acc (max)``, or ``none (last epoch kept)``."""
        return f"{self.metric} ({self.mode})" if self.metric else "none (last epoch kept)"


NOTHING_MONITORED = Monitor(None)


def inferred_mode(metric: str) -> str:
    """``max`` for names such as ``val_acc``, ``val/f1``, ``valid-dice``; ``min`` for any other (losses, errors)."""
    return "max" if metric.lower().endswith(HIGHER_IS_BETTER) else "min"


def best_by_direction(values: Iterable[Any], direction: str, key: Callable[[Any], Any] | None = None) -> Any:
    """The best of ``values`` for a study ``direction`` ("maximize" or "minimize")."""
    pick = max if direction == "maximize" else min
    return pick(values, key=key) if key is not None else pick(values)


def declared_monitor(model: Any) -> Monitor:
    """The monitor a model class or instance declares (``monitor``, ``monitor_mode``), else nothing monitored."""
    metric = getattr(model, "monitor", None)
    if not isinstance(metric, str) or not metric:
        return NOTHING_MONITORED
    mode = getattr(model, "monitor_mode", None)
    return Monitor(metric, mode if mode in ("min", "max") else inferred_mode(metric))


def monitored_metric(model: Any, config: Any = None, study: Mapping[str, Any] | None = None) -> Monitor:
    """The metric a run of ``model`` (class or instance) monitors: the one place this is decided.

    In order: the study's ``metric``/``direction`` (``study``: the experiment file's study section, given
    while a study is planned; its trials then carry the choice as their config's ``monitor``), else the
    ``monitor`` section of ``config`` (a RunConfig or a plain document), else the model's declared contract,
    else nothing (the checkpoint keeps the last epoch, no run fails for want of a metric).

    Checkpoint, pruning, ReduceLROnPlateau, the refit's epochs and the learning-curve plot all follow it.
    """
    section = (config.section("monitor") if hasattr(config, "section") else (config or {}).get("monitor")) or {}
    chosen = Monitor(section["metric"], section.get("mode") or inferred_mode(section["metric"])) if section.get("metric") else None
    fallback = chosen or declared_monitor(model)
    if not study or not study.get("metric"):
        return fallback
    metric, direction = study["metric"], study.get("direction")
    if direction is None:
        if metric != fallback.metric:
            raise ConfigError("study.direction", expected=f"minimize or maximize (it cannot be inferred for {metric})")
        return fallback
    if direction not in ("minimize", "maximize"):
        raise ConfigError("study.direction", direction, "minimize or maximize")
    return Monitor(metric, "max" if direction == "maximize" else "min")


def why_test_is_skipped(model: Any, datamodule: Any, config: Any = None) -> str | None:
    """Why the run's test is skipped (``test: false`` in the file, no ``test_step``, no test data), or None."""
    import lightning as L
    from lightning.pytorch.utilities.model_helpers import is_overridden

    if config is not None and config.section("test") is False:
        return "test: false in the experiment file"
    if not is_overridden("test_step", model, L.LightningModule):
        return f"{type(model).__name__} has no test_step"
    if not is_overridden("test_dataloader", datamodule, L.LightningDataModule):
        return f"{type(datamodule).__name__} has no test_dataloader"
    return None


def task_type(model: Any) -> str | None:
    return model.task_type if isinstance(model, Typed) else None


def accepts_optimization(model: Any) -> bool:
    """Whether ``model`` (class or instance) takes the file's sections through ``set_optimization``."""
    return callable(getattr(model, "set_optimization", None))


def injects_optimization(model: Any, optimizer: Any, lr_scheduler: Any) -> bool:
    """LightningCLI's rule for a model (class or instance) without ``set_optimization``: True when the
    sections are to be injected as its ``configure_optimizers``, False when it builds its own. A section
    for a model with its own ``configure_optimizers``, or none for a model without, is a ConfigError."""
    import lightning as L
    from lightning.pytorch.utilities.model_helpers import is_overridden

    name = getattr(model, "__name__", type(model).__name__)
    if is_overridden("configure_optimizers", model, L.LightningModule):
        if optimizer or lr_scheduler:
            key = "optimizer" if optimizer else "lr_scheduler"
            raise ConfigError(key, expected=f"no {key} section: {name} builds its own optimizer in configure_optimizers",
                              hint="remove the section, or remove configure_optimizers from the model to have it injected")
        return False
    if not optimizer:
        raise ConfigError("optimizer", expected="a section such as {class_path: torch.optim.Adam, init_args: {lr: 0.001}}",
                          hint=f"{name} does not define configure_optimizers")
    return True


def data_facts(datamodule: Any) -> dict[str, Any]:
    """What ``datamodule.describe()`` states; {} for a datamodule without it."""
    return dict(datamodule.describe()) if isinstance(datamodule, Described) else {}


def data_fingerprint(datamodule: Any) -> dict[str, Any] | None:
    return datamodule.fingerprint() if isinstance(datamodule, Fingerprinted) else None


def class_names(datamodule: Any) -> list[str] | None:
    return getattr(datamodule, "class_names", None)
