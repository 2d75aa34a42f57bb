"""Silence Lightning chatter that says nothing about the user's run (tips, known-harmless warnings)."""

from __future__ import annotations

import logging
import warnings


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip" not in record.getMessage()


def quiet_lightning() -> None:
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in rank_zero.filters):
        rank_zero.addFilter(_DropTips())
    # trainlab logs per epoch; Lightning's per-step logging interval does not apply.
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    # Our in-memory loaders are not DataLoaders; worker-count advice does not apply to them.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
