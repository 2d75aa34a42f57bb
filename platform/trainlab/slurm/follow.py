"""``--wait``: follow a study's job array in the terminal until its last task has left the queue.

One line whenever something changes: trials counted out of the budget, the best value so far, array tasks
running and pending (SLURM's own view, ``squeue``; accounting, hence ``sacct``, may not be there).
"""

from __future__ import annotations

import time

POLL_S = 3.0
_ACTIVE = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STAGE_OUT"}


def follow_array(job_id: str, study, metric: str, n_trials: int | None, poll_s: float = POLL_S) -> None:
    from optuna.trial import TrialState

    from trainlab.slurm.queue import queued_states

    last = None
    while True:
        states = queued_states(job_id)
        if states is None:  # the controller did not answer: ask again
            time.sleep(poll_s)
            continue
        trials = study.get_trials(deepcopy=False)
        counted = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        failed = sum(t.state == TrialState.FAIL for t in trials)
        line = f"slurm {job_id}: {counted}/{n_trials if n_trials else '-'} trials done, {running} running, {failed} failed"
        best = _best_value(study)
        if best is not None:
            line += f"; best {metric}={best:.4f}"
        active = sum(state in _ACTIVE for state in states)
        line += f"; tasks {active} running, {sum(state == 'PENDING' for state in states)} pending"
        if line != last:
            print(line, flush=True)
            last = line
        if not states:
            return
        time.sleep(poll_s)


def _best_value(study) -> float | None:
    if len(study.directions) > 1:
        return None
    try:
        return study.best_value
    except ValueError:  # no complete trial yet
        return None


def task_exit_codes(jobs) -> list[int | None]:
    """Each task's exit code as its function returned it; None for a task that never reported (killed, cancelled)."""
    from submitit.core.utils import pickle_load

    codes: list[int | None] = []
    for job in jobs:
        path = job.paths.result_pickle
        try:
            outcome, value = pickle_load(path)
        except (OSError, EOFError, ValueError):
            codes.append(None)
            continue
        codes.append(int(value) if outcome == "success" and isinstance(value, int) else 1)
    return codes
