"""Training diagnostics: Lightning callbacks that turn gradients, curves and predictions into verdicts and pictures.

:func:`diagnostic_callbacks` is what the training path adds to every run, from the experiment file's
``diagnostics`` section.
"""

from __future__ import annotations

from typing import Any


def diagnostic_callbacks(settings: dict[str, Any] | None, model) -> list:
    """The callbacks the ``diagnostics`` section switches on (cheap ones on by default)."""
    return []
