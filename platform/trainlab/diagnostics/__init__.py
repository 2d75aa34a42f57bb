"""Training diagnostics: Lightning callbacks that turn gradients, curves and predictions into verdicts and pictures.

:func:`diagnostic_callbacks` is what the training path adds to every run, from the experiment file's
``diagnostics`` section (:class:`DiagnosticsSpec`). Each callback is usable on its own in any Lightning
``Trainer``; what they write goes to the run's MLflow logger on rank 0.

- ``NonFiniteGuard``: ends the run FAILED at the first NaN/inf loss or gradient, naming step and layer (on)
- ``GradientFlowMonitor``: per-layer gradient norms and update ratios, heatmap, verdict tags (on)
- ``OverfittingDetector``: ``loss_gap`` per epoch, ``overfit_epoch``, cures in the run description (on)
- ``LossTrendMonitor``: ``trainlab.warning=diverging|oscillating`` when the learning rate is too high (on)
- ``ConfusionMatrixReport`` / ``SegmentationOverlayGrid`` / ``ForecastPlot``: test-set pictures chosen by
  the task's ``task_type`` (on)
- ``ConvFilterGrid``: the first convolution layer's kernels, for models with a ``Conv2d`` (on)
- ``ActivationHistograms``: activation outputs, first vs last epoch (off: moves activations to the host)
"""

from __future__ import annotations

from typing import Any

from trainlab.diagnostics._tracking import forget_diagnoses
from trainlab.diagnostics.spec import DiagnosticsSpec

__all__ = ["DiagnosticsSpec", "diagnostic_callbacks", "forget_diagnoses"]


def diagnostic_callbacks(settings: dict[str, Any] | bool | None, model, pictures: bool = True, tested: bool = True) -> list:
    """The callbacks the ``diagnostics`` section switches on for ``model`` (cheap ones on by default).

    The guard comes first, so no other callback sees the non-finite step. ``pictures=False`` (a study
    trial) keeps every verdict, tag, note and metric and draws no matplotlib figure: the callbacks that
    only draw are left out, the others skip their figures. ``tested=False`` (a run that skips its test, as
    every study trial does) leaves out the test-set callbacks: every callback costs each step a dispatch.
    :func:`trainlab.diagnostics.recorded.draw_recorded_pictures` draws the learning curves and gradient-flow
    pictures of such a run later, from what it recorded.
    """
    from torch import nn

    from trainlab.diagnostics.activations import ActivationHistograms
    from trainlab.diagnostics.confusion_matrix import ConfusionMatrixReport
    from trainlab.diagnostics.conv_filters import ConvFilterGrid
    from trainlab.diagnostics.forecast import ForecastPlot
    from trainlab.diagnostics.gradient_flow import GradientFlowMonitor
    from trainlab.diagnostics.loss_trend import LossTrendMonitor
    from trainlab.diagnostics.non_finite import NonFiniteGuard
    from trainlab.diagnostics.overfitting import OverfittingDetector
    from trainlab.diagnostics.segmentation import SegmentationOverlayGrid

    spec = DiagnosticsSpec.from_document(settings)
    if not spec.enabled:
        return []
    pictures = pictures and spec.pictures
    callbacks: list = []
    if spec.non_finite_guard:
        callbacks.append(NonFiniteGuard())
    if spec.gradient_flow.enabled:
        flow = spec.gradient_flow
        callbacks.append(GradientFlowMonitor(flow.vanishing_ratio, flow.exploding_norm, flow.per_step, pictures=pictures))
    if spec.overfitting.enabled:
        callbacks.append(OverfittingDetector(spec.overfitting.patience, spec.overfitting.min_val_rise))
    if spec.loss_trend.enabled:
        trend = spec.loss_trend
        callbacks.append(
            LossTrendMonitor(
                trend.diverging_rise, trend.diverging_step_factor, trend.oscillation_swing, trend.oscillation_fraction, trend.min_epochs
            )
        )
    if spec.test_predictions.enabled and tested:
        task_type, samples = getattr(model, "task_type", None), spec.test_predictions.samples
        if task_type == "classification":
            callbacks.append(ConfusionMatrixReport(pictures=pictures))
        elif task_type == "segmentation" and pictures:
            callbacks.append(SegmentationOverlayGrid(samples))
        elif task_type == "forecasting" and pictures:
            callbacks.append(ForecastPlot(samples))
    if pictures and spec.conv_filters and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        callbacks.append(ConvFilterGrid())
    if pictures and spec.activation_histograms:
        callbacks.append(ActivationHistograms())
    return callbacks
