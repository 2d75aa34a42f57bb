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
          system_metrics: true   # MLflow's system/* curves (CPU, memory, disk, network, GPU) while the run trains
    """

    experiment: NotEmptyStr = "trainlab"  # MLflow refuses an empty experiment name
    run_name: Optional[str] = None
    description: Optional[str] = None
    tags: dict[str, str] = field(default_factory=dict)
    # Off by default: the sampler is a thread that also reads the run from the store at every sample.
    system_metrics: bool = False
