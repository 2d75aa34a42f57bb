"""Who owns a run or a trial, its heartbeat, and whether that owner is still alive: one rule for both.

A process that trains records its identity (host, pid, process start time) and keeps a heartbeat fresh
from a daemon thread (every :data:`HEARTBEAT_INTERVAL_S`, at most once a minute). Its owner is dead:

- on this host, as soon as the pid is gone, a zombie, or a different process (a recycled pid starts later);
- on another host, once the heartbeat is older than :func:`heartbeat_timeout_s` (default
  :data:`DEFAULT_HEARTBEAT_TIMEOUT_S`; set ``TRAINLAB_HEARTBEAT_TIMEOUT`` in seconds, e.g. a slow shared
  filesystem or long pauses may need more). Clocks of the machines are assumed to agree to well within it.

Runs (:mod:`trainlab.tracking.reaper`) and study trials (:mod:`trainlab.studies.stale`) both use it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

HEARTBEAT_INTERVAL_S = 60.0
DEFAULT_HEARTBEAT_TIMEOUT_S = 5 * HEARTBEAT_INTERVAL_S
HEARTBEAT_TIMEOUT_ENV = "TRAINLAB_HEARTBEAT_TIMEOUT"


def heartbeat_timeout_s() -> float:
    """How long an owner on another host may stay silent before its run or trial is reaped."""
    from trainlab.errors import ConfigError

    text = os.environ.get(HEARTBEAT_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_HEARTBEAT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > HEARTBEAT_INTERVAL_S:
        raise ConfigError(HEARTBEAT_TIMEOUT_ENV, text, f"a number of seconds above the heartbeat interval ({HEARTBEAT_INTERVAL_S:.0f})")
    return value


def process_identity() -> dict[str, Any]:
    """This process: ``{"host", "pid", "started"}`` (start time in clock ticks since boot, None off Linux)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _proc_stat(os.getpid())[1]}


class Heartbeat:
    """Calls ``beat(now)`` every ``interval_s`` from a daemon thread until :meth:`stop`; a failed beat is
    retried at the next interval (a store that is briefly away must not end the training)."""

    def __init__(self, beat: Callable[[float], Any], interval_s: float = HEARTBEAT_INTERVAL_S) -> None:
        self._beat, self._interval_s = beat, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trainlab-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from trainlab.fork_safety import background_write

        while not self._stop.wait(self._interval_s):
            with contextlib.suppress(Exception), background_write():  # no worker is forked mid-write
                self._beat(time.time())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


def death_reason(owner: dict[str, Any] | None, last_beat: float | None, since: float | None, who: str = "process") -> str | None:
    """Why the owner of a RUNNING run or trial is dead, or None while it may be alive.

    ``owner`` is a :func:`process_identity`; ``last_beat`` its latest heartbeat (epoch seconds);
    ``since`` when the run or trial began, for one whose owner died before it could record itself;
    ``who`` names the owner in the reason ("worker process" for a trial).
    """
    now = time.time()
    timeout = heartbeat_timeout_s()
    if not owner:
        started = since if since is not None else now
        return f"its {who} died before it recorded itself (nothing for {now - started:.0f} s)" if now - started > timeout else None
    if owner.get("host") == socket.gethostname():
        if process_alive(int(owner["pid"]), owner.get("started")):
            return None
        return f"its {who} {owner['pid']} on {owner['host']} died (killed or crashed)"
    last = float(last_beat or since or 0.0)
    if now - last > timeout:
        return f"its {who} {owner['pid']} on {owner['host']} sent no heartbeat for {now - last:.0f} s (timeout {timeout:.0f} s, {HEARTBEAT_TIMEOUT_ENV})"
    return None


def process_alive(pid: int, started: float | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    state, start = _proc_stat(pid)
    if state == "Z":
        return False  # exited, not yet waited for by its parent
    # A recycled pid belongs to a process that started later than the one recorded.
    return started is None or start is None or float(start) == float(started)


def _proc_stat(pid: int) -> tuple[str | None, float | None]:
    """(state, start time in clock ticks since boot) from Linux /proc; Nones where unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), float(fields[19])  # fields 3 and 22 of proc(5), counted after the name
    except (OSError, IndexError, ValueError):
        return None, None
