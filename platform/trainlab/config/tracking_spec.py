"""The experiment file's ``tracking`` section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class TrackingSpec:
    """Where and how a run is recorded in MLflow.

    Example::

        tracking:
          experiment: digits
          run_name: mlp-baseline
          tags: {owner: me}
    """

    experiment: str = "trainlab"
    run_name: Optional[str] = None
    description: Optional[str] = None
    tags: dict[str, str] = field(default_factory=dict)
