"""The experiment file's ``monitor`` section: the metric a run watches, when the file names it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass
class MonitorSpec:
    """Which logged metric the checkpoint keeps the best epoch of (pruning and plots follow it), and which
    way is better. ``mode`` left out: inferred from the name (``val_acc``, ``val/f1``: max; losses: min).
    Without a section, the model's declared ``monitor`` applies, else nothing is monitored and the last
    epoch is kept (``trainlab.contract.monitored_metric`` decides).

    Example::

        monitor:
          metric: val_acc
          mode: max
    """

    metric: Optional[str] = None
    mode: Optional[Literal["min", "max"]] = None
