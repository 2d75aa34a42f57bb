"""What each task of a study's job array runs: the study worker, then, as the last one done, the study's close.

submitit pickles :func:`run_array_task` with its arguments and calls it in every task (a fresh Python on
the node, the submitting interpreter and working directory). The worker is the one ``--jobs`` runs
locally; a task killed by ``scancel`` or its time limit loses its current trial only (SIGTERM ends it
KILLED; a task gone without a word is reaped by the others), and the remaining tasks replace it.
"""

from __future__ import annotations

import os
import sys


def run_array_task(settings, parent_run_id: str) -> int:
    """Run one study worker (:class:`~trainlab.studies.worker.WorkerSettings`); returns its exit code."""
    from trainlab.errors import ConfigError
    from trainlab.studies.worker import run_worker
    from trainlab.training.processes import interrupt_on_sigterm

    interrupt_on_sigterm()  # submitit ignores SIGTERM; scancel and the time limit should end the trial KILLED
    import torch

    torch.set_num_threads(int(os.environ.get("SLURM_CPUS_PER_TASK") or 1))  # the task's own cores, no more
    try:
        run_worker(settings)
    except ConfigError as exc:
        print(f"trainlab: error: {exc.message}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 130
    close_study_when_done(settings, parent_run_id)
    return 0


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
