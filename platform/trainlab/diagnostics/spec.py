"""The experiment file's ``diagnostics`` section: which diagnostics run and the thresholds behind their verdicts.

Every threshold is stated here, so a verdict tag on a run can always be traced back to a number a user
can read and change (``trainlab train exp.yaml diagnostics.gradient_flow.vanishing_ratio=1e-4``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from trainlab.errors import ConfigError
from trainlab.types import NonNegativeFloat, PositiveFloat, PositiveInt, UnitFraction


@dataclass
class GradientFlowSpec:
    """Per-layer gradient norms and update/weight ratios per epoch, and the run's gradient verdict.

    A layer is *vanishing* when its mean gradient norm over the run is below ``vanishing_ratio`` times the
    strongest layer's (0 switches the check off); *exploding* when its gradient norm, averaged over any
    one epoch, exceeds ``exploding_norm``. ``per_step`` also plots every step's norms (costs memory).

    Example::

        diagnostics:
          gradient_flow: {vanishing_ratio: 0.001, exploding_norm: 100.0}
    """

    enabled: bool = True
    vanishing_ratio: UnitFraction = 1e-3
    exploding_norm: PositiveFloat = 100.0
    per_step: bool = False


@dataclass
class OverfittingSpec:
    """Overfitting: validation loss bottomed out at some epoch while training loss kept falling after it.

    Detected when at least ``patience`` epochs follow the epoch of lowest validation loss, the validation
    losses after it average more than ``min_val_rise`` (a fraction) above that lowest value, and the last
    training loss is below the training loss of that epoch.
    """

    enabled: bool = True
    patience: PositiveInt = 2
    min_val_rise: NonNegativeFloat = 0.05


@dataclass
class LossTrendSpec:
    """Warnings that the learning rate is too high, read off the training loss.

    *diverging*: a step's loss exceeds ``diverging_step_factor`` × the first step's, or the last epoch's
    loss is more than ``diverging_rise`` (a fraction) above the first epoch's. *oscillating*: over at
    least ``min_epochs`` epochs, a share of at least ``oscillation_fraction`` of the epoch-to-epoch
    changes are rises of more than ``oscillation_swing`` × the largest epoch loss.
    """

    enabled: bool = True
    diverging_rise: PositiveFloat = 0.5
    diverging_step_factor: PositiveFloat = 10.0
    oscillation_swing: UnitFraction = 0.1
    oscillation_fraction: UnitFraction = 0.3
    min_epochs: PositiveInt = 4


@dataclass
class TestPredictionsSpec:
    """Pictures of test-set predictions, chosen by the task's ``task_type``.

    classification: confusion matrix with per-class precision/recall; segmentation: ``samples`` test
    images with true and predicted masks; forecasting: ``samples`` predicted vs true series.
    """

    enabled: bool = True
    samples: PositiveInt = 6


@dataclass
class DiagnosticsSpec:
    """Training diagnostics switched on for a run. Cheap ones are on by default; ``enabled: false`` turns all off.

    Example::

        diagnostics:
          gradient_flow: {vanishing_ratio: 0.001}
          overfitting: {patience: 3}
          activation_histograms: true   # off by default: one extra forward pass with hooks
    """

    enabled: bool = True
    gradient_flow: GradientFlowSpec = field(default_factory=GradientFlowSpec)
    overfitting: OverfittingSpec = field(default_factory=OverfittingSpec)
    loss_trend: LossTrendSpec = field(default_factory=LossTrendSpec)
    non_finite_guard: bool = True
    test_predictions: TestPredictionsSpec = field(default_factory=TestPredictionsSpec)
    conv_filters: bool = True
    activation_histograms: bool = False
    # false: every verdict, tag and metric, no matplotlib figure (study trials: pictures are drawn at the
    # end of the study for the trials that completed, from their recorded numbers)
    pictures: bool = True

    @classmethod
    def from_document(cls, section: Any) -> "DiagnosticsSpec":
        """Build from the resolved config's ``diagnostics`` section; ``false`` (here or for one part) switches off.

        jsonargparse validates the keys and values inside the section, but lets a section that is not a
        mapping through (it would read a string as a file name), so that case is checked here.
        """
        return _from_value(cls, section, "diagnostics")


def _from_value(cls, value: Any, key: str):
    if value is None:
        return cls()
    if isinstance(value, bool):
        return cls(enabled=value)
    if not isinstance(value, dict):
        raise ConfigError(key, value, "a mapping of settings, or true/false to switch it on/off")
    kwargs = {}
    for spec_field in dataclasses.fields(cls):
        if spec_field.name not in value:
            continue
        nested = spec_field.default_factory if spec_field.default_factory is not dataclasses.MISSING else None
        item = value[spec_field.name]
        kwargs[spec_field.name] = _from_value(nested, item, f"{key}.{spec_field.name}") if dataclasses.is_dataclass(nested) else item
    return cls(**kwargs)
