"""Training diagnostics: Lightning callbacks that turn gradients, curves and predictions into verdicts and pictures.

:func:`diagnostic_callbacks` is what the training path adds to every run, from the experiment file's
``diagnostics`` section (:class:`DiagnosticsSpec`).
"""

from __future__ import annotations

from typing import Any

from trainlab.diagnostics.spec import DiagnosticsSpec


def diagnostic_callbacks(settings: dict[str, Any] | bool | None, model) -> list:
    """The callbacks the ``diagnostics`` section switches on (cheap ones on by default)."""
    from trainlab.diagnostics.gradient_flow import GradientFlowMonitor

    spec = DiagnosticsSpec.from_document(settings)
    if not spec.enabled:
        return []
    callbacks: list = []
    flow = spec.gradient_flow
    if flow.enabled:
        callbacks.append(GradientFlowMonitor(flow.vanishing_ratio, flow.exploding_norm, flow.per_step))
    return callbacks
