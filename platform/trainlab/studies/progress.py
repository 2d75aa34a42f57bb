"""One line per finished trial: its state and value, the best so far, trials counted, and an ETA.
(The running trials print a line per epoch of their own: training/progress.py.)

Everything is read from the study storage, so the lines of parallel workers agree with each other.
The ETA multiplies the trials still to run by the mean duration of the counted (complete or pruned)
trials, divided by the number of workers: pruned trials are short, and they shorten the mean in the
proportion the pruner actually prunes.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from trainlab.studies.stale import FAIL_REASON_ATTR


class ProgressPrinter:
    """Prints ``[ 7/20] trial 6   PRUNED   after 4 epochs, val/acc=0.9012   best 0.9654 (trial 3)   ETA 1m40s``.

    The running trials' epochs are their own lines (``trial 7  epoch 3/20 ...``, training/progress.py).

    Example::

        printer = ProgressPrinter("val/acc", n_trials=20, jobs=2)
        printer.trial_finished(study, frozen_trial)
    """

    def __init__(self, metric: str, n_trials: int | None, jobs: int = 1, deadline: float | None = None, stream: TextIO | None = None) -> None:
        self.metric = metric
        self.n_trials = n_trials
        self.jobs = max(jobs, 1)
        self.deadline = deadline
        self.stream = stream

    def trial_finished(self, study, trial) -> None:
        from optuna.trial import TrialState

        from trainlab.studies.report import best_trial

        trials = study.get_trials(deepcopy=False)
        counted = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        total = f"/{self.n_trials}" if self.n_trials else ""
        parts = [f"[{len(counted):>3}{total}] trial {trial.number:<3} {trial.state.name:<8} {self._detail(trial)}"]
        if len(study.directions) > 1:
            parts.append(f"Pareto front: {len(study.best_trials)} trial(s)")
        else:
            best = best_trial(study)
            if best is not None:
                parts.append(f"best {best.value:.4f} (trial {best.number})")
        eta = self._eta(counted)
        if eta:
            parts.append(eta)
        print("   ".join(parts), file=self.stream or sys.stdout, flush=True)

    def _detail(self, trial) -> str:
        from optuna.trial import TrialState

        if trial.state == TrialState.COMPLETE and len(trial.values) > 1:
            from trainlab.studies.trial import VALUES_ATTR

            values = trial.user_attrs.get(VALUES_ATTR) or {}
            return " ".join(f"{metric}={_number(value)}" for metric, value in values.items()) + _infeasible(trial)
        if trial.state == TrialState.COMPLETE:
            return f"{self.metric}={trial.value:.4f}" + _infeasible(trial)
        if trial.state == TrialState.PRUNED:
            last = max(trial.intermediate_values) if trial.intermediate_values else None
            value = f", {self.metric}={trial.intermediate_values[last]:.4f}" if last is not None else ""
            # Counted like the trials' epoch lines (epoch 3/20 is the third): Optuna's step is the epoch index.
            return f"after {last + 1} epochs{value}"
        reason = str(trial.user_attrs.get(FAIL_REASON_ATTR, "no reason recorded"))
        return reason if len(reason) <= 100 else reason[:97] + "..."

    def _eta(self, counted) -> str | None:
        left_by_time = self.deadline - time.time() if self.deadline else None
        if self.n_trials is None:
            return f"time left {_duration(max(left_by_time, 0))}" if left_by_time is not None else None
        remaining = self.n_trials - len(counted)
        if remaining <= 0:
            return "done"
        durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in counted if t.datetime_start and t.datetime_complete]
        if not durations:
            return None
        seconds = remaining * (sum(durations) / len(durations)) / self.jobs
        if left_by_time is not None:
            seconds = min(seconds, max(left_by_time, 0))
        return f"ETA {_duration(seconds)}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _infeasible(trial) -> str:
    """A trial that breaks a constraint never counts as best or joins the front: say so on its line."""
    broken = [name for name, value in trial.constraints.items() if value > 0]
    return f" (infeasible: {', '.join(broken)})" if broken else ""


def _number(value: float) -> str:
    """A count stays a whole number (``model/params=167210``, not ``1.672e+05``)."""
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"
