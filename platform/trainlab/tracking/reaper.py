"""Runs left RUNNING by a process that is gone (``kill -9``, a crash, a lost machine) are ended KILLED.

Every run records its owner as tags (:data:`HOST_TAG`, :data:`PID_TAG`, :data:`PROCESS_STARTED_TAG`) and a
heartbeat (:data:`HEARTBEAT_TAG`, epoch seconds, refreshed at most once a minute while it trains). Every
trainlab command that opens a tracking store calls :func:`reap_dead_runs` there
(:func:`trainlab.tracking.store.check_tracking_store`): a run whose owner is dead by the rule of
:mod:`trainlab.tracking.liveness` ends KILLED, its reason in ``trainlab.status_reason`` and the time it
was reaped in :data:`REAPED_TAG`. Study trials follow the same rule (:mod:`trainlab.studies.stale`).
"""

from __future__ import annotations

import time
from typing import Any

from trainlab.tracking.liveness import HEARTBEAT_INTERVAL_S, Heartbeat, death_reason, process_identity

HOST_TAG = "trainlab.host"
PID_TAG = "trainlab.pid"
PROCESS_STARTED_TAG = "trainlab.process_started"  # clock ticks since boot: tells a recycled pid apart
HEARTBEAT_TAG = "trainlab.heartbeat"
REAPED_TAG = "trainlab.reaped"
REAPED_PREFIX = "reaped by trainlab: "
MAX_RUNNING_CHECKED = 1000


def owner_tags() -> dict[str, str]:
    """This process as the owner of a run it is about to create, with a first heartbeat."""
    me = process_identity()
    tags = {HOST_TAG: me["host"], PID_TAG: str(me["pid"]), HEARTBEAT_TAG: f"{time.time():.0f}"}
    if me["started"] is not None:
        tags[PROCESS_STARTED_TAG] = f"{me['started']:.0f}"
    return tags


def start_heartbeat(client, run_id: str, interval_s: float = HEARTBEAT_INTERVAL_S) -> Heartbeat:
    return Heartbeat(lambda now: client.set_tag(run_id, HEARTBEAT_TAG, f"{now:.0f}"), interval_s)


def claim_run(client, run_id: str) -> Heartbeat:
    """Make this process the owner of an existing run (a study's parent run, reopened by each invocation):
    owner tags, a fresh heartbeat, and no reaped/status tags left from an earlier owner."""
    from mlflow.entities import RunTag

    from trainlab.tracking.run_record import RUN_STATUS_TAG

    tags = client.get_run(run_id).data.tags
    for stale in (REAPED_TAG, RUN_STATUS_TAG, PROCESS_STARTED_TAG):
        if stale in tags:
            client.delete_tag(run_id, stale)
    client.log_batch(run_id, tags=[RunTag(key, value) for key, value in owner_tags().items()])
    return start_heartbeat(client, run_id)


def release_run(client, run_id: str, heartbeat: Heartbeat) -> None:
    """Stop owning a run that others still use (a parent run whose trials run on other workers): with no
    owner recorded, the reaper leaves it to them; the last of them ends it."""
    heartbeat.stop()
    tags = client.get_run(run_id).data.tags
    for key in (HOST_TAG, PID_TAG, PROCESS_STARTED_TAG, HEARTBEAT_TAG):
        if key in tags:
            client.delete_tag(run_id, key)


def run_death_reason(run) -> str | None:
    """Why a RUNNING MLflow run's owner is dead; None while it may live, or for a run with no owner recorded
    (a study's parent run, runs of other tools): those are never reaped here."""
    tags = run.data.tags
    if HOST_TAG not in tags or PID_TAG not in tags:
        return None
    owner: dict[str, Any] = {"host": tags[HOST_TAG], "pid": int(tags[PID_TAG]), "started": _number(tags.get(PROCESS_STARTED_TAG))}
    return death_reason(owner, _number(tags.get(HEARTBEAT_TAG)), run.info.start_time / 1000 if run.info.start_time else None)


def reap_run(tracking_uri: str, run_id: str | None, reason: str) -> bool:
    """End a run whose owner is dead KILLED, saying why and when; a run that already ended keeps its status."""
    from trainlab.tracking.end_run import end_mlflow_run

    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return end_mlflow_run(tracking_uri, run_id, "KILLED", reason, {REAPED_TAG: when})


def reap_dead_runs(client) -> list[tuple[str, str]]:
    """End every RUNNING run of the store whose owner is dead; returns ``(run_id, reason)`` of those ended."""
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return []
    running = client.search_runs(experiment_ids, filter_string="attributes.status = 'RUNNING'", max_results=MAX_RUNNING_CHECKED)
    reaped = []
    for run in running:
        reason = run_death_reason(run)
        if reason is not None and reap_run(client.tracking_uri, run.info.run_id, REAPED_PREFIX + reason):
            reaped.append((run.info.run_id, reason))
    return reaped


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None
