"""What each task of a study's job array runs: the study worker, then, as the last one done, the study's close.

submitit pickles a :class:`StudyWorkerTask` with its arguments and calls it in every task (a fresh Python
on the node, the submitting interpreter and working directory). The worker is the one ``--jobs`` runs
locally; a task killed by ``scancel`` loses its current trial only (SIGTERM ends it KILLED; a task gone
without a word is reaped by the others), and the remaining tasks replace it.

Time limits and preemption: tasks are submitted with ``--signal=USR2@signal_delay_s``. On that signal
submitit calls :meth:`StudyWorkerTask.checkpoint`, requeues the task (``scontrol requeue``) and exits.
The trial in progress is handed over rather than lost: it stays RUNNING in Optuna, marked with the
requeued job (the reaper leaves it alone while that job is queued), its MLflow run keeps its resume
checkpoint (:mod:`trainlab.training.resume`), and the requeued task first resumes it in the same run.
"""

from __future__ import annotations

import os
import signal
import sys
import time


class StudyWorkerTask:
    """The callable of every array task; submitit's checkpoint/requeue protocol (a ``checkpoint`` method)."""

    def __call__(self, settings, parent_run_id: str, handed_over: int | None = None) -> int:
        """Run one study worker (:class:`~trainlab.studies.worker.WorkerSettings`); returns its exit code."""
        from trainlab.errors import ConfigError
        from trainlab.studies.worker import run_worker
        from trainlab.training.processes import interrupt_on_sigterm

        interrupt_on_sigterm()  # submitit ignores SIGTERM; scancel should end the trial KILLED
        import torch

        torch.set_num_threads(int(os.environ.get("SLURM_CPUS_PER_TASK") or 1))  # the task's own cores, no more
        try:
            run_worker(settings, handed_over)
        except ConfigError as exc:
            print(f"trainlab: error: {exc.message}", file=sys.stderr, flush=True)
            return 2
        except KeyboardInterrupt:
            return 130
        close_study_when_done(settings, parent_run_id)
        return 0

    def checkpoint(self, settings, parent_run_id: str, handed_over: int | None = None):
        """Called by submitit on SIGUSR2 (time limit near, preemption): the same task, resuming our trial."""
        import submitit

        # The requeue cancels this run of the task (srun forwards SIGINT, SLURM sends SIGTERM): neither may
        # fail the trial that the requeued task resumes. submitit exits right after this method.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
        number = hand_over_trial(settings)
        print(f"trainlab: SLURM task {_this_task()} requeued before its time limit"
              + (f"; trial {number} continues from its checkpoint when the task starts again" if number is not None else ""),
              file=sys.stderr, flush=True)
        return submitit.helpers.DelayedSubmission(self, settings, parent_run_id, number)


def hand_over_trial(settings) -> int | None:
    """Mark the trial this process runs as handed over to this task's requeued run; its number (None: none)."""
    from optuna.trial import TrialState

    from trainlab.studies.journal_lock import release_locks_of_this_thread
    from trainlab.studies.loading import load_existing_study
    from trainlab.studies.stale import REQUEUED_ATTR, WORKER_ATTR, worker_identity

    release_locks_of_this_thread()  # a signal handler: the worker it interrupted may be mid-write to the journal
    study, storage = load_existing_study(settings.storage_url, settings.study_name)
    me = worker_identity()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(WORKER_ATTR) or {}
        if owner.get("pid") == me["pid"] and owner.get("host") == me["host"]:
            storage.set_trial_user_attr(trial._trial_id, REQUEUED_ATTR, {"job": _this_task(), "at": time.time()})
            return trial.number
    return None


def resume_handed_over_trial(study, storage, context, number: int):
    """Resume trial ``number`` in its own MLflow run from its resume checkpoint, and tell Optuna how it
    ended (FrozenTrial). None when the trial no longer runs (reaped meanwhile); a trial whose run cannot
    be resumed (no checkpoint yet) is failed, and the study replaces it."""
    import optuna
    from optuna.trial import TrialState

    from trainlab.errors import ConfigError
    from trainlab.studies.stale import FAIL_REASON_ATTR, REQUEUED_ATTR
    from trainlab.studies.trial import MLFLOW_RUN_ATTR, execute_trial
    from trainlab.training.resume import resume_point

    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    frozen = storage.get_trial(trial_id)
    if frozen.state != TrialState.RUNNING:
        print(f"trainlab: trial {number} was not resumed: it is {frozen.state.name} now", file=sys.stderr, flush=True)
        return None
    run_id = frozen.user_attrs.get(MLFLOW_RUN_ATTR)
    try:
        if not run_id:
            raise ConfigError("trial", number, "a trial whose run had begun", hint="the task was signalled before the trial's run existed")
        _end_predecessors_run(context.tracking_uri, run_id)
        resume = resume_point(context.tracking_uri, run_id)
    except ConfigError as exc:
        storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, f"requeued, but its run cannot be resumed: {exc.message}"[:2000])
        return study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    storage.set_trial_user_attr(trial_id, REQUEUED_ATTR, None)  # ours now: the usual liveness rule again
    print(f"trainlab: resuming trial {number} (run {run_id}) at epoch {resume.epoch}", file=sys.stderr, flush=True)
    return execute_trial(study, optuna.trial.Trial(study, trial_id), context, resume=resume)


def _end_predecessors_run(tracking_uri: str, run_id: str | None) -> None:
    """The requeued process may have been killed before it could end its run: end it KILLED, so it can be resumed."""
    from trainlab.tracking.reaper import reap_run, run_death_reason
    from trainlab.tracking.store import tracking_client

    if not run_id:
        return
    run = tracking_client(tracking_uri).get_run(run_id)
    reason = run_death_reason(run) if run.info.status == "RUNNING" else None
    if reason:
        reap_run(tracking_uri, run_id, reason)


def _this_task() -> str:
    """This array task as SLURM names it (JOBID_TASK), or the plain job id."""
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}"
    return os.environ.get("SLURM_JOB_ID", "?")


def close_study_when_done(settings, parent_run_id: str) -> bool:
    """Once no trial runs any more (dead workers' trials reaped), write the study's report on its parent run
    and end that run FINISHED; whoever gets there first does it. Returns whether the study is closed."""
    from optuna.trial import TrialState

    from trainlab.studies.loading import load_existing_study
    from trainlab.studies.parent_run import end_parent_run
    from trainlab.studies.report import write_study_report
    from trainlab.studies.stale import reap_dead_trials
    from trainlab.studies.storage import ClaimLock
    from trainlab.studies.trial import context_for
    from trainlab.tracking.store import tracking_client

    study, storage = load_existing_study(settings.storage_url, settings.study_name)
    with ClaimLock(settings.storage_url, settings.study_name).held():
        reap_dead_trials(study, storage, settings.tracking_uri)
        if study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            return False
        if tracking_client(settings.tracking_uri).get_run(parent_run_id).info.status != "RUNNING":
            return True
        spec = context_for(study, settings.tracking_uri, settings.n_trials, settings.timeout, settings.storage_url, settings.devices_per_trial).spec
        write_study_report(study, spec, settings.tracking_uri, parent_run_id)
        end_parent_run(settings.tracking_uri, parent_run_id, "FINISHED")
    return True
