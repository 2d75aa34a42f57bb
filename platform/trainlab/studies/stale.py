"""Trials left RUNNING by a dead worker: find them, fail them in Optuna, end their MLflow runs KILLED.

Optuna's own heartbeat exists only for RDB storages and only inside ``study.optimize``; trainlab's
default storage is a journal file and its workers use ask/tell, so each trial records who runs it and a
heartbeat as user attrs, judged by the same rule as runs (:mod:`trainlab.tracking.liveness`).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from trainlab.tracking.liveness import HEARTBEAT_INTERVAL_S, Heartbeat, process_identity
from trainlab.tracking.liveness import death_reason as owner_death_reason
from trainlab.tracking.reaper import reap_run

WORKER_ATTR = "trainlab.worker"
HEARTBEAT_ATTR = "trainlab.heartbeat"
FAIL_REASON_ATTR = "trainlab.fail_reason"
# A trial whose SLURM task was signalled before its time limit (or preempted) and requeued: {"job", "at"}.
# It stays RUNNING, alive while that job is queued, and the requeued task resumes it (trainlab.slurm).
REQUEUED_ATTR = "trainlab.requeued"
REAPED_PREFIX = "trial failed by trainlab: "  # a reaped trial's fail reason starts so: counted as lost

worker_identity = process_identity


@contextlib.contextmanager
def heartbeat(trial, interval_s: float = HEARTBEAT_INTERVAL_S) -> Iterator[None]:
    """Mark ``trial`` as ours and keep its heartbeat fresh while the block runs."""
    import time

    trial.set_user_attr(WORKER_ATTR, worker_identity())
    trial.set_user_attr(HEARTBEAT_ATTR, time.time())
    beating = Heartbeat(lambda now: trial.set_user_attr(HEARTBEAT_ATTR, now), interval_s)
    try:
        yield
    finally:
        beating.stop()


def death_reason(trial) -> str | None:
    """Why the RUNNING ``trial`` (a FrozenTrial) is dead, or None while its worker may still be alive."""
    requeued = trial.user_attrs.get(REQUEUED_ATTR)
    if requeued:
        return _requeued_death_reason(requeued)
    since = trial.datetime_start.timestamp() if trial.datetime_start else None
    return owner_death_reason(trial.user_attrs.get(WORKER_ATTR), trial.user_attrs.get(HEARTBEAT_ATTR), since, who="worker process")


def is_handed_over(study, trial) -> bool:
    """Whether ``trial`` was handed over to a requeued SLURM task (read afresh: it happens in a signal handler)."""
    try:
        return bool(study._storage.get_trial(trial._trial_id).user_attrs.get(REQUEUED_ATTR))
    except Exception:
        return False


def _requeued_death_reason(requeued: dict) -> str | None:
    """A handed-over trial lives while its requeued job is in SLURM's queue (or, where squeue cannot say,
    for one heartbeat timeout after the hand-over)."""
    import time

    from trainlab.slurm.queue import queued_states
    from trainlab.tracking.liveness import heartbeat_timeout_s

    states = queued_states(str(requeued.get("job")), tasks=False)
    if states:
        return None
    if states is None and time.time() - float(requeued.get("at") or 0) < heartbeat_timeout_s():
        return None
    return f"its requeued SLURM job {requeued.get('job')} left the queue before resuming it"


def was_reaped(trial) -> bool:
    """Whether a FAIL trial was failed by the reaper (its worker died), not by its own training."""
    return str(trial.user_attrs.get(FAIL_REASON_ATTR, "")).startswith(REAPED_PREFIX)


def reap_dead_trials(study, storage, tracking_uri: str) -> list[int]:
    """Fail every RUNNING trial of ``study`` whose worker is dead; end its MLflow run KILLED (as the run
    reaper would). Returns their numbers."""
    import optuna
    from optuna.trial import TrialState

    reaped = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = death_reason(trial)
        if reason is None:
            continue
        reason = REAPED_PREFIX + reason
        try:
            # Optuna's public API sets no user attr on a trial it did not hand out; the reason goes in first.
            storage.set_trial_user_attr(trial._trial_id, FAIL_REASON_ATTR, reason)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, KeyError):
            continue  # another worker reaped it, or its own worker finished it after all
        if study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True).state != TrialState.FAIL:
            continue  # its own worker finished it in the meantime
        reap_run(tracking_uri, trial.user_attrs.get("mlflow_run_id"), reason)
        reaped.append(trial.number)
    return reaped

def adopt_a_dead_trial(study, storage, tracking_uri: str):
    """A RUNNING trial whose worker died and whose run kept a resume checkpoint, now claimed by this process
    (call under the study's claim lock): ``(trial id, ResumeFrom)``, or None. The next worker continues
    it with the same parameters in the same MLflow run instead of failing and replacing it; a trial that
    died before its first checkpoint is left to :func:`reap_dead_trials`."""
    import time

    from optuna.trial import TrialState

    from trainlab.errors import InputError
    from trainlab.training.resume import resume_point

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = death_reason(trial)
        run_id = trial.user_attrs.get("mlflow_run_id")
        if reason is None or not run_id:
            continue
        reap_run(tracking_uri, run_id, REAPED_PREFIX + reason)  # the run's owner is gone too: KILLED until resumed
        try:
            resume = resume_point(tracking_uri, run_id)
        except InputError:
            continue  # no checkpoint (yet): failed and replaced
        storage.set_trial_user_attr(trial._trial_id, WORKER_ATTR, worker_identity())
        storage.set_trial_user_attr(trial._trial_id, HEARTBEAT_ATTR, time.time())
        return trial._trial_id, resume
    return None
