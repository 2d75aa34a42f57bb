"""Verified reproduction: read back what a run recorded, audit it against now, re-run it, compare the curves.

- :func:`load_recorded` reads a run's config, environment, code diff, data fingerprint and curves from MLflow;
- :func:`audit` lists what differs between recorded and now, and whether an exact reproduction is expected;
- :func:`compare_histories` finds where two runs' curves diverge;
- :func:`reproduce` does all three around one call of the training path (``trainlab reproduce``).
"""

from trainlab.reproduce.audit import Audit, Difference, audit
from trainlab.reproduce.compare import Comparison, compare_histories
from trainlab.reproduce.recorded import RecordedRun, load_recorded
from trainlab.reproduce.rerun import Reproduction, reproduce, rerun_config

__all__ = [
    "Audit",
    "Comparison",
    "Difference",
    "RecordedRun",
    "Reproduction",
    "audit",
    "compare_histories",
    "load_recorded",
    "reproduce",
    "rerun_config",
]
