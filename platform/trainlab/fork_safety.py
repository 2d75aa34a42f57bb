"""Forking a study worker from a process that holds database connections and runs a heartbeat thread.

``trainlab study --jobs N`` forks its extra CPU workers (:func:`trainlab.studies.worker.run_workers`): a fork
starts at once with everything imported (torch, Lightning, MLflow, Optuna, the config parser), where a fresh
interpreter spends seconds importing them again. A fork must not inherit two things:

- a pooled database connection: parent and child would talk over one socket. Every SQLAlchemy engine this
  process has connected with is disposed just before the fork (SQLAlchemy's own advice for ``os.fork``:
  the pooled connections are closed, and each process opens its own on next use);
- a lock held by another thread: the child would wait for it forever. Threads that write to a store in the
  background (heartbeats) hold :func:`background_write` while they write, and the fork waits for it.

Forks only on Linux (:func:`can_fork`): macOS system libraries are not fork-safe, and there callers start
fresh processes instead. Usage::

    child = start_forked(draw_pictures, study, uri, name="trainlab-pictures")
    ...
    child.wait()
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

_engines: "weakref.WeakSet[object]" = weakref.WeakSet()
_background_write = threading.Lock()
_remembering = False


def remember_engines() -> None:
    """Remember every SQLAlchemy engine of this process as it connects (idempotent; one set add per connection)."""
    global _remembering
    if _remembering:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    event.listen(Engine, "engine_connect", _remember)
    atexit.register(_close_engines)  # a SQLite store's write-ahead log is folded back when its last connection closes
    _remembering = True


def _remember(connection) -> None:
    _engines.add(connection.engine)


def _close_engines() -> None:
    for engine in list(_engines):
        with contextlib.suppress(Exception):
            engine.dispose()


def background_write() -> threading.Lock:
    """The lock a background thread holds while it writes to a store, so that no fork happens mid-write."""
    return _background_write


def can_fork() -> bool:
    return sys.platform.startswith("linux")


def start_forked(target: Callable[..., Any], *args: Any, name: str) -> "Forked":
    """Run ``target(*args)`` in a forked child. Its output reaches this process's ``sys.stdout``/``sys.stderr``
    line by line (they may not be the terminal: a captured or redirected stream)."""
    import multiprocessing

    sys.stdout.flush()  # or the child would write out the parent's buffered lines once more
    sys.stderr.flush()
    gc.freeze()  # what exists now is shared with the child, not copied when the collector touches it
    pipes = [os.pipe(), os.pipe()]  # the child's stdout and stderr
    process = multiprocessing.get_context("fork").Process(target=_run_in_child, args=(target, args, [w for _, w in pipes]), name=name)
    with ready_to_fork():
        process.start()
    relays = []
    for (read, write), stream in zip(pipes, (sys.stdout, sys.stderr)):
        os.close(write)
        relay = threading.Thread(target=relay_lines, args=(os.fdopen(read, encoding="utf-8", errors="replace"), stream), daemon=True)
        relay.start()
        relays.append(relay)
    return Forked(process, relays)


class Forked:
    """A child started by :func:`start_forked`."""

    def __init__(self, process, relays: list[threading.Thread]) -> None:
        self.process, self._relays = process, relays

    def wait(self) -> int:
        """Its exit code once it ended: ``target``'s ``sys.exit`` code, 1 for an exception, -N when killed by signal N."""
        self.process.join()
        for relay in self._relays:
            relay.join(timeout=5)
        return self.process.exitcode

    def terminate(self) -> None:
        if self.process.exitcode is None:
            self.process.terminate()


def _run_in_child(target: Callable[..., Any], args: tuple, outputs: list[int]) -> None:
    after_fork_in_child()
    for pipe, standard, name in zip(outputs, (1, 2), ("stdout", "stderr")):
        os.dup2(pipe, standard)  # C-level writes (torch, warnings from libraries) go to the relay too
        os.close(pipe)
        setattr(sys, name, open(standard, "w", buffering=1, encoding="utf-8", closefd=False))
    target(*args)


def relay_lines(source, target) -> None:
    """Copy a child's output to ``target`` a whole line at a time (children's lines never interleave mid-line)."""
    with source:
        for line in source:
            target.write(line)
            target.flush()


@contextlib.contextmanager
def ready_to_fork() -> Iterator[None]:
    """No background write in flight and no pooled connection open while the block (the fork) runs."""
    with _background_write:
        _close_engines()
        yield


def after_fork_in_child() -> None:
    """In a child forked inside :func:`ready_to_fork`: let its own background writers run."""
    if _background_write.locked():
        _background_write.release()
