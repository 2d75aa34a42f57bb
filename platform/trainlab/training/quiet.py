"""Silence Lightning chatter that says nothing about the user's run (tips, known-harmless warnings)."""

from __future__ import annotations

import logging
import warnings


# trainlab says itself, in one line, that a run was interrupted or terminated.
_DROPPED = ("💡 Tip", "Detected KeyboardInterrupt, attempting graceful shutdown", "Received SIGTERM")


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in _DROPPED)


def quiet_lightning() -> None:
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.trainer.connectors.signal_connector"):
        chatty = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in chatty.filters):
            chatty.addFilter(_DropTips())
    # trainlab logs per epoch; Lightning's per-step logging interval does not apply.
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    # Our in-memory loaders are not DataLoaders; worker-count advice does not apply to them.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # The best-weights checkpoint comes first on purpose (training/prepare.py); the resume checkpoint is the second.
    warnings.filterwarnings("ignore", message=r".*configured with multiple `ModelCheckpoint` callbacks.*")
    # A machine with SLURM's tools installed is not a SLURM job: trainlab's own launcher decides (README).
    warnings.filterwarnings("ignore", message=r".*The `srun` command is available on your system but is not used.*")
