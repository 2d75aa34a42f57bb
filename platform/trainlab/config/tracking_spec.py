"""The experiment file's ``tracking`` section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from jsonargparse.typing import NotEmptyStr


@dataclass
class TrackingSpec:
    """Where and how a run is recorded in MLflow.

    Example::

        tracking:
          experiment: digits
          run_name: mlp-baseline
          tags: {owner: me}
    """

    experiment: NotEmptyStr = "trainlab"  # MLflow refuses an empty experiment name
    run_name: Optional[str] = None
    description: Optional[str] = None
    tags: dict[str, str] = field(default_factory=dict)
