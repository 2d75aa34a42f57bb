"""A study worker: claim a trial, run it, repeat until the study's budget is met.

``trainlab study --jobs N`` runs one in its own process and forks N - 1 more (GPU workers start as
``python -m trainlab.studies.worker``), all on one storage. Nothing here calls ``study.optimize``;
trials are asked and told one by one. A trial that needs several processes (DDP) runs as its own process
group, launched per trial (:func:`trainlab.training.launch.launch`): Lightning's DDP launcher re-executes
the command that started it, and a re-executed worker would be one worker too many.

Budget: ``n_trials`` counts COMPLETE and PRUNED trials; FAILED ones do not count, so a failure is
replaced. A worker asks for a new trial only while counted + running trials are below ``n_trials``
(under a :class:`~trainlab.studies.storage.ClaimLock`), and waits while the last trials run, in case
one of them fails and must be replaced; but a study whose trials keep failing stops after max(n_trials, 3)
failed trials. A deadline (``--timeout``) stops new trials; running ones finish.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass

POLL_S = 0.25  # while the last trials run elsewhere: a worker's look at the study (reads its storage)
# A worker process reads its WorkerSettings (JSON) from this environment variable, not from argv: the storage
# URL may hold a password, and argv is shown to every user of the machine by `ps`; the environment is not.
SETTINGS_VARIABLE = "TRAINLAB_WORKER_SETTINGS"
WORKER_TITLE = "trainlab.studies.worker"  # a forked worker's name in ps, as a fresh one's module shows there


@dataclass
class WorkerSettings:
    """Everything a worker process needs; the rest it reads from the study itself."""

    storage_url: str
    study_name: str
    tracking_uri: str
    n_trials: int | None
    timeout: float | None = None
    deadline: float | None = None  # epoch seconds after which no trial is started
    jobs: int = 1
    devices_per_trial: int | None = None  # --devices-per-trial: trainer.devices of every trial


def run_worker(settings: WorkerSettings, handed_over: int | None = None) -> None:
    """Claim and run trials until the budget is met or the deadline passes; first, resume trial
    ``handed_over`` (a requeued SLURM task's, see :mod:`trainlab.slurm.array_task`) when it still runs."""
    from trainlab.studies.loading import load_existing_study
    from trainlab.studies.progress import ProgressPrinter
    from trainlab.studies.pruners import build_pruner
    from trainlab.studies.quiet import quiet_for_studies
    from trainlab.studies.stale import adopt_a_dead_trial, reap_dead_trials
    from trainlab.studies.storage import ClaimLock
    from trainlab.studies.trial import context_for, execute_trial

    quiet_for_studies()
    study, storage = load_existing_study(settings.storage_url, settings.study_name)
    context = context_for(study, settings.tracking_uri, settings.n_trials, settings.timeout, settings.storage_url, settings.devices_per_trial)
    spec = context.spec
    study.pruner = build_pruner(spec.pruner, spec.max_epochs)
    lock = ClaimLock(settings.storage_url, settings.study_name)
    progress = ProgressPrinter(spec.metric, settings.n_trials, settings.jobs, settings.deadline)
    if handed_over is not None:
        from trainlab.slurm.array_task import resume_handed_over_trial

        frozen = resume_handed_over_trial(study, storage, context, handed_over)
        if frozen is not None:
            progress.trial_finished(study, frozen)
    while settings.deadline is None or time.time() < settings.deadline:
        with lock.held():
            adopted = adopt_a_dead_trial(study, storage, settings.tracking_uri)
            reap_dead_trials(study, storage, settings.tracking_uri)
            trial, stop = _next_trial(study, spec, settings.n_trials) if adopted is None else (None, None)
        if adopted is not None:  # a dead worker's trial, continued from its checkpoint in the same run
            import optuna

            trial_id, resume = adopted
            trial = optuna.trial.Trial(study, trial_id)
            print(f"trainlab: continuing trial {trial.number} at epoch {resume.epoch} (its worker died)", file=sys.stderr, flush=True)
            frozen = execute_trial(study, trial, context, resume=resume)
            progress.trial_finished(study, frozen)
            continue
        if stop is not None:
            if stop:
                print(f"trainlab: study {spec.name}: {stop}", file=sys.stderr, flush=True)
            return
        if trial is None:  # the last trials are running; wait in case one fails and must be replaced
            time.sleep(POLL_S)
            continue
        frozen = execute_trial(study, trial, context)
        progress.trial_finished(study, frozen)
        _maybe_retry(study, frozen, spec.retry_failed)
        _release_trial_memory()


def _release_trial_memory() -> None:
    """Free what the finished trial left in reference cycles (model, trainer, tensors), then freeze the rest.

    A full collection walks every object the process holds: ~500k once torch, Lightning and MLflow are
    imported, 0.3 s, as long as a short trial's training. Frozen objects (``gc.freeze``) are skipped by later
    collections, so each one walks only what the trials since have made.
    """
    gc.collect()
    gc.freeze()


def _next_trial(study, spec, n_trials: int | None):
    """``(trial, None)`` to run one; ``(None, None)`` to wait; ``(None, why)`` to stop (``""``: budget met)."""
    from optuna.trial import TrialState

    from trainlab.studies.samplers import build_sampler
    from trainlab.studies.stale import FAIL_REASON_ATTR

    trials = study.get_trials(deepcopy=False)
    counted = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if n_trials is not None and counted >= n_trials:
        return None, ""
    if len(failed) >= _failure_limit(n_trials):
        return None, f"giving up after {len(failed)} failed trials; the last: {failed[-1].user_attrs.get(FAIL_REASON_ATTR, '?')}"
    if n_trials is not None and counted + running >= n_trials:
        return None, None
    study.sampler = build_sampler(spec.sampler, spec.space, seed_offset=len(trials))
    if _grid_done(study, trials):
        return None, ""
    return study.ask(), None


def run_workers(settings: WorkerSettings, jobs: int, gpu_slots: list[str] | None = None) -> list[int]:
    """Run ``jobs`` workers sharing the study; returns the other workers' exit codes (negative: killed by that signal).

    Without ``gpu_slots`` this process is one of the workers and ``jobs - 1`` more are forked from it: a fork
    starts at once with this process's imports and config parser (see :mod:`trainlab.fork_safety`), where a
    fresh interpreter spends seconds on them. With ``gpu_slots`` (``CUDA_VISIBLE_DEVICES`` per worker, see
    :func:`~trainlab.studies.devices.device_slots`) every worker is a fresh process, because a process sees
    the GPUs it was started with (as is every worker where forking is unsafe, see :func:`~trainlab.fork_safety.can_fork`).
    Each worker gets ``cores // jobs`` torch threads, so that N workers do not oversubscribe the CPU (on a
    small model, threads fighting over cores cost far more than they bring).
    """
    import torch

    threads = max(1, _usable_cores() // jobs)
    own_threads = torch.get_num_threads()
    if gpu_slots:
        workers = [_start_worker(settings, threads, gpu_slots[index]) for index in range(jobs)]
    else:
        torch.set_num_threads(threads)
        workers = _fork_workers(settings, threads, jobs - 1)
    try:
        if not gpu_slots:
            run_worker(settings)
        return [worker.wait() for worker in workers]
    except BaseException:
        # Ctrl-C reached the workers too (same process group); a SIGTERM or an error reached only us.
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait()
        raise
    finally:
        torch.set_num_threads(own_threads)


class _Worker:
    """A fresh worker process, its output relayed line by line (the calls :func:`run_workers` makes, as on a forked one)."""

    def __init__(self, process: subprocess.Popen, relays: list[threading.Thread]) -> None:
        self.process, self.relays = process, relays

    def wait(self) -> int:
        code = self.process.wait()
        for relay in self.relays:
            relay.join(timeout=5)
        return code

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()


def _fork_workers(settings: WorkerSettings, threads: int, count: int) -> list:
    from trainlab.fork_safety import can_fork, start_forked

    if not can_fork():
        return [_start_worker(settings, threads) for _ in range(count)]
    return [start_forked(_forked_worker, settings, threads, name="trainlab-study-worker") for _ in range(count)]


def _forked_worker(settings: WorkerSettings, threads: int) -> None:
    from setproctitle import setproctitle

    # In ps and top: what it is, not the command line it was forked from (which may hold a storage password).
    setproctitle(f"{WORKER_TITLE}: study {settings.study_name}")
    sys.exit(serve(settings, threads))


def _start_worker(settings: WorkerSettings, threads: int, gpus: str | None = None) -> _Worker:
    """A fresh worker process (``python -m trainlab.studies.worker``), its output relayed line by line."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    env[SETTINGS_VARIABLE] = json.dumps(asdict(settings))
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    process = subprocess.Popen(
        [sys.executable, "-m", "trainlab.studies.worker", "--threads", str(threads)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    from trainlab.fork_safety import relay_lines

    relays = [threading.Thread(target=relay_lines, args=(stream, target), daemon=True) for stream, target in ((process.stdout, sys.stdout), (process.stderr, sys.stderr))]
    for relay in relays:
        relay.start()
    return _Worker(process, relays)


def _grid_done(study, trials) -> bool:
    """A grid sampler whose every point has been tried (retries queued aside) ends the study, whatever n_trials says."""
    from optuna.trial import TrialState

    is_exhausted = getattr(study.sampler, "is_exhausted", None)
    waiting = any(t.state == TrialState.WAITING for t in trials)
    return bool(is_exhausted and is_exhausted(study)) and not waiting


def _failure_limit(n_trials: int | None) -> int | float:
    """Failed trials are replaced, but not forever: a study whose every trial fails stops after this many."""
    return max(n_trials, 3) if n_trials is not None else float("inf")


def _maybe_retry(study, trial, retries: int) -> None:
    """Queue a failed trial's values once more, up to ``study.retry_failed`` times per original trial."""
    from optuna.trial import TrialState

    if retries <= 0 or trial.state != TrialState.FAIL:
        return
    done = int(trial.user_attrs.get("trainlab.retry", 0))
    if done >= retries:
        return
    original = trial.user_attrs.get("trainlab.retry_of", trial.number)
    study.enqueue_trial(trial.params, user_attrs={"trainlab.retry_of": original, "trainlab.retry": done + 1})


def auto_jobs(gpus_per_trial: int | None, visible_gpus: list[str]) -> int:
    """``study.jobs: auto``: one worker per GPU slot for GPU trials, else one per usable CPU core (each worker
    then trains with one torch thread: a small model's step is mostly Python, and one thread per core beats
    threads that wait on each other; a compute-bound model loses nothing)."""
    per_trial = 1 if gpus_per_trial is None else gpus_per_trial  # None: a trial takes what its slot holds
    if per_trial > 0 and visible_gpus:
        return max(1, len(visible_gpus) // per_trial)
    return max(1, _usable_cores())


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainlab.studies.worker", description=__doc__)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads for this worker")
    args = parser.parse_args(argv)
    if SETTINGS_VARIABLE not in os.environ:
        parser.error(f"{SETTINGS_VARIABLE} (WorkerSettings as JSON) is not set; `trainlab study --jobs N` starts workers")
    # Read once and dropped: the trials' own processes get what they need through their launch file.
    settings = WorkerSettings(**json.loads(os.environ.pop(SETTINGS_VARIABLE)))
    return serve(settings, args.threads)


def serve(settings: WorkerSettings, threads: int | None) -> int:
    """A worker process's life: dies with its parent, SIGTERM as an interrupt, trials until the budget is met; its exit code."""
    from trainlab.training.processes import die_with_parent, interrupt_on_sigterm

    interrupt_on_sigterm()
    die_with_parent()
    if threads:
        import torch

        torch.set_num_threads(threads)
    from trainlab.errors import ConfigError
    from trainlab.secrets import masked_terminal

    try:
        with masked_terminal():
            run_worker(settings)
    except ConfigError as exc:
        print(f"trainlab: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
