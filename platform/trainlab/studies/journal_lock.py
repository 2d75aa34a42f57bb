"""The journal file's lock, knowing which thread of this process holds it.

A Python signal handler runs in the main thread, on top of whatever that thread was doing. SLURM's
time-limit signal (submitit's SIGUSR2 handler, :mod:`trainlab.slurm.array_task`) writes the hand-over mark
to the study's journal; landing while the worker itself writes to the journal (a trial's report, a user
attribute), that write would wait for the lock its own thread holds: 30 s, past SLURM's grace, until
Optuna breaks the lock, while the trial's heartbeat stalls behind it and the trial is failed as dead.
:func:`release_locks_of_this_thread` lets the handler take the lock over instead: the interrupted write
never resumes (submitit exits after its handler), and its own release is then a no-op.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

_locks: "weakref.WeakSet[ThreadAwareLock]" = weakref.WeakSet()


class ThreadAwareLock:
    """Wraps an Optuna journal lock (``JournalFileBackend(path, lock_obj=ThreadAwareLock(...))``, which only
    calls ``acquire`` and ``release``; Optuna does not export its lock base class)."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self.holder: int | None = None  # the thread that holds it
        _locks.add(self)

    def acquire(self) -> bool:
        acquired = self._lock.acquire()
        self.holder = threading.get_ident()
        return acquired

    def release(self) -> None:
        if self.holder is None:  # already released for this thread's signal handler
            return
        self.holder = None
        self._lock.release()


def release_locks_of_this_thread() -> int:
    """Release every journal lock this thread holds (call it from a signal handler only); how many."""
    mine = [lock for lock in list(_locks) if lock.holder == threading.get_ident()]
    for lock in mine:
        lock.release()
    return len(mine)
