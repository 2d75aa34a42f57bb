"""What the engine reads from a model (LightningModule) and a datamodule (LightningDataModule), in one place.

Every item is optional: a plain LightningModule and a plain LightningDataModule train, are tracked and
can be searched over as they are. A class that declares an item gets more from trainlab:

==========================  ==============================================================================
model ``monitor``           metric the best checkpoint keeps, the learning-curve plot shows, and a study
                            optimises unless it names ``study.metric`` (fallback ``val/loss``)
model ``monitor_mode``      ``"min"`` or ``"max"`` for ``monitor`` (fallback ``"min"``)
model ``task_type``         ``"classification"``, ``"segmentation"``, ``"forecasting"``, ...: which test
                            pictures diagnostics may draw (fallback: none)
model ``set_optimization``  receives the experiment file's ``optimizer``/``lr_scheduler`` sections; without
                            it the module's own ``configure_optimizers`` rules and those sections are refused
datamodule ``describe()``   facts (``num_classes``, ``input_shape``) filled into the model's unset ``__init__``
                            arguments of the same name
datamodule ``fingerprint()``  per-split digests logged as ``data_fingerprint.json`` (reproduce compares them)
datamodule ``class_names``  labels for confusion matrices
==========================  ==============================================================================

See ``docs/extending.md`` for a complete small example of each. The readers below are the only place the
engine looks these items up; :func:`monitored_metric` is where the run's monitored metric is decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

FALLBACK_MONITOR = "val/loss"
FALLBACK_MONITOR_MODE = "min"


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
    """The metric a run watches, and which way is better."""

    metric: str
    mode: str  # "min" or "max"

    @property
    def direction(self) -> str:
        """Optuna's word for ``mode``."""
        return "maximize" if self.mode == "max" else "minimize"


def best_by_direction(values: Iterable[Any], direction: str, key: Callable[[Any], Any] | None = None) -> Any:
    """The best of ``values`` for a study ``direction`` ("maximize" or "minimize")."""
    pick = max if direction == "maximize" else min
    return pick(values, key=key) if key is not None else pick(values)


def declared_monitor(model: Any) -> Monitor:
    """The monitor a model class or instance declares, else the fallback (``val/loss``, min)."""
    return Monitor(getattr(model, "monitor", FALLBACK_MONITOR), getattr(model, "monitor_mode", FALLBACK_MONITOR_MODE))


def monitored_metric(model: Any, config: Any = None) -> Monitor:
    """The metric a run of ``model`` (class or instance) under ``config`` (a RunConfig, or None) monitors.

    Today: the model's declared contract, else the fallback. ``config`` is accepted so that a study metric
    or a ``monitor`` of the experiment file can take precedence here, in this one place.
    """
    return declared_monitor(model)


def task_type(model: Any) -> str | None:
    return model.task_type if isinstance(model, Typed) else None


def accepts_optimization(model: Any) -> bool:
    return isinstance(model, Optimizable)


def data_facts(datamodule: Any) -> dict[str, Any]:
    """What ``datamodule.describe()`` states; {} for a datamodule without it."""
    return dict(datamodule.describe()) if isinstance(datamodule, Described) else {}


def data_fingerprint(datamodule: Any) -> dict[str, Any] | None:
    return datamodule.fingerprint() if isinstance(datamodule, Fingerprinted) else None


def class_names(datamodule: Any) -> list[str] | None:
    return getattr(datamodule, "class_names", None)
