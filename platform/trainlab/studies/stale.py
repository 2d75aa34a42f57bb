"""Trials left RUNNING by a dead worker: find them, fail them in Optuna, end their MLflow runs.

Optuna's own heartbeat exists only for RDB storages and only inside ``study.optimize``; trainlab's
default storage is a journal file and its workers use ask/tell, so it keeps the equivalent here, for
every storage alike. Each trial records who runs it (host, pid, process start time) and a heartbeat:
a trial whose worker ran on this host is dead as soon as that process is gone (``kill -9`` included);
one from another host is dead when its heartbeat is older than :data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Any, Iterator

from trainlab.tracking.end_run import end_mlflow_run

WORKER_ATTR = "trainlab.worker"
HEARTBEAT_ATTR = "trainlab.heartbeat"
FAIL_REASON_ATTR = "trainlab.fail_reason"
HEARTBEAT_INTERVAL_S = 30.0
STALE_AFTER_S = 4 * HEARTBEAT_INTERVAL_S


def worker_identity() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _process_start(os.getpid())}


@contextlib.contextmanager
def heartbeat(trial, interval_s: float = HEARTBEAT_INTERVAL_S) -> Iterator[None]:
    """Mark ``trial`` as ours and keep its heartbeat fresh while the block runs."""
    trial.set_user_attr(WORKER_ATTR, worker_identity())
    trial.set_user_attr(HEARTBEAT_ATTR, time.time())
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval_s):
            with contextlib.suppress(Exception):  # a missed beat is retried at the next interval
                trial.set_user_attr(HEARTBEAT_ATTR, time.time())

    thread = threading.Thread(target=beat, name="trainlab-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def death_reason(trial) -> str | None:
    """Why the RUNNING ``trial`` (a FrozenTrial) is dead, or None while its worker may still be alive."""
    owner = trial.user_attrs.get(WORKER_ATTR)
    now = time.time()
    if owner is None:
        # Asked but not yet marked: a worker that died in that instant leaves only the start time.
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        return f"its worker died before the trial started (no heartbeat for {now - started:.0f} s)" if now - started > STALE_AFTER_S else None
    if owner.get("host") == socket.gethostname():
        if _process_alive(owner["pid"], owner.get("started")):
            return None
        return f"its worker process {owner['pid']} on {owner['host']} died (killed or crashed)"
    last = float(trial.user_attrs.get(HEARTBEAT_ATTR, 0.0))
    if now - last > STALE_AFTER_S:
        return f"its worker {owner['pid']} on {owner['host']} sent no heartbeat for {now - last:.0f} s"
    return None


def reap_dead_trials(study, storage, tracking_uri: str) -> list[int]:
    """Fail every RUNNING trial of ``study`` whose worker is dead; end its MLflow run FAILED. Returns their numbers."""
    import optuna
    from optuna.trial import TrialState

    reaped = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = death_reason(trial)
        if reason is None:
            continue
        reason = f"trial failed by trainlab: {reason}"
        try:
            # Optuna's public API sets no user attr on a trial it did not hand out; the reason goes in first.
            storage.set_trial_user_attr(trial._trial_id, FAIL_REASON_ATTR, reason)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, KeyError):
            continue  # another worker reaped it, or its own worker finished it after all
        if study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True).state != TrialState.FAIL:
            continue  # its own worker finished it in the meantime
        end_mlflow_run(tracking_uri, trial.user_attrs.get("mlflow_run_id"), "FAILED", reason)
        reaped.append(trial.number)
    return reaped


def _process_alive(pid: int, started: float | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    state, start = _proc_stat(pid)
    if state == "Z":
        return False  # exited, not yet waited for by its parent
    # A recycled pid belongs to a process that started later than the one that ran the trial.
    return started is None or start is None or start == started


def _process_start(pid: int) -> float | None:
    return _proc_stat(pid)[1]


def _proc_stat(pid: int) -> tuple[str | None, float | None]:
    """(state, start time in clock ticks since boot) from Linux /proc; Nones where unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), float(fields[19])  # fields 3 and 22 of proc(5), counted after the name
    except (OSError, IndexError, ValueError):
        return None, None
