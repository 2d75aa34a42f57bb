"""One run as one SLURM job, one task per device (``srun``): what ``launch(..., slurm=settings)`` does.

``trainlab train``, ``trainlab reproduce`` and a study's ``--refit-best`` call
:func:`~trainlab.training.launch.launch`; with ``--launcher slurm`` it submits the run here and follows the
job until it leaves the queue. Every task calls ``launch`` again with the same config, tags and role;
SLURM started them as the run's ranks (``SLURM_NTASKS`` > 1), so each trains in-process and Lightning's
``SLURMEnvironment`` wires them together (world size, ranks, master address from the job). Rank 0 owns the
one MLflow run, as on one machine; its :class:`~trainlab.training.fit_run.RunResult` comes back through
submitit's result file, and ``launch`` returns it (or raises ``RunEnded``) as it does for a local run.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, replace
from typing import Any

from trainlab.errors import ConfigError
from trainlab.slurm.settings import SlurmSettings


class TrainTask:
    """The callable of every task of a training job; rank 0 returns the run's result as a dict."""

    def __call__(self, config, tracking_uri: str, launched: dict[str, Any]) -> dict[str, Any] | None:
        import torch

        from trainlab.class_paths import import_class
        from trainlab.training import RunEnded, launch
        from trainlab.training.processes import interrupt_on_sigterm
        from trainlab.training.resume import ResumeFrom

        interrupt_on_sigterm()
        torch.set_num_threads(launched.get("threads") or int(os.environ.get("SLURM_CPUS_PER_TASK") or 1))
        role = import_class(launched["role"]["class"]).from_launch(launched["role"]["fields"])
        resume = ResumeFrom(**launched["resume"]) if launched.get("resume") else None
        try:
            result = launch(config, tracking_uri, parent_run_id=launched["parent_run_id"], tags=launched["tags"], role=role, resume=resume)
        except RunEnded as ended:
            result = ended.result
        return asdict(result) if result.run_id is not None else None


def job_name(config, tags=None) -> str:
    """trainlab-train-EXPERIMENT, or -reproduction-/-refit- after the run's trainlab.kind tag."""
    kind = (tags or {}).get("trainlab.kind") or "train"
    return f"trainlab-{kind}-{(config.section('tracking') or {}).get('experiment') or 'run'}"


def checked_job(settings: SlurmSettings, config, tags=None, *, devices_if_auto: int | None = None) -> SlurmSettings:
    """The run's job (its shape from the trainer section), accepted by ``sbatch --test-only``; bad input
    (sbatch missing, a setting sbatch refuses) as a ConfigError before anything is submitted or recorded.
    ``devices_if_auto``: the tasks per node for a ``trainer.devices`` that is no number (auto), where the
    caller knows (a refit: 1, as each study array task was; a reproduction: the recorded world size)."""
    from trainlab.slurm.submit import check_with_sbatch, require_sbatch

    require_sbatch()
    trainer = config.section("trainer")
    if devices_if_auto and not str(trainer.get("devices", 1)).isdigit():
        trainer = {**trainer, "devices": devices_if_auto}  # the job's shape only: the config trains as written
    shaped = job_shape(trainer, settings)
    check_with_sbatch(shaped, job_name(config, tags), 1)
    return shaped


def job_shape(trainer: dict[str, Any], settings: SlurmSettings) -> SlurmSettings:
    """``trainer.num_nodes`` nodes with ``trainer.devices`` tasks each (and as many GPUs, on GPUs)."""
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes") or 1
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
        raise ConfigError("trainer.devices", devices, "a number of devices per node (an integer) with --launcher slurm")
    gpus = devices if str(trainer.get("accelerator", "auto")).lower() in ("gpu", "cuda") else settings.gpus_per_node
    return replace(settings, nodes=int(nodes), tasks_per_node=devices, gpus_per_node=gpus)


def train_as_job(settings: SlurmSettings, config, uri: str, parent_run_id, tags, role, resume):
    """Submit the run as one job (``settings`` from :func:`checked_job`), follow it until it leaves the
    queue, and return rank 0's RunResult; RunEnded when the run did not finish, as a local run raises it."""
    from trainlab.slurm.queue import queued_states
    from trainlab.slurm.submit import submit_workers
    from trainlab.training.fit_run import RunEnded, RunResult
    from trainlab.training.launch import result_from_json

    launched = {
        "parent_run_id": parent_run_id,
        "tags": dict(tags or {}),
        "role": {"class": f"{type(role).__module__}:{type(role).__qualname__}", "fields": role.to_launch()},
        "resume": asdict(resume) if resume else None,
        "threads": settings.threads,
    }
    job = submit_workers(settings, job_name(config, tags), 1, TrainTask(), config, uri, launched)
    tasks = settings.nodes * settings.tasks_per_node
    print(f"slurm: submitted job {job.job_id} ({settings.nodes} node(s) x {settings.tasks_per_node} task(s), one per device)")
    print(f"follow: squeue -j {job.job_id}; output: {job.log_hint()}", flush=True)
    last = None
    while True:
        states = queued_states(job.job_id, tasks=False)
        if states == []:
            break
        if states and states[0] != last:
            print(f"slurm {job.job_id}: {states[0]} ({tasks} task(s))", flush=True)
            last = states[0]
        time.sleep(2)
    fields = rank_zero_result(job.jobs[0])
    if fields is None:
        raise RunEnded(RunResult(None, "FAILED", reason=f"slurm job {job.job_id} ended without a result; see {job.log_hint()}"))
    result = result_from_json(fields)
    if result.status != "FINISHED":
        raise RunEnded(result)
    return result


def rank_zero_result(job) -> dict[str, Any] | None:
    from submitit.core.utils import pickle_load

    try:
        outcome, value = pickle_load(job.paths.result_pickle)
    except (OSError, EOFError, ValueError):
        return None
    if outcome != "success":
        print(str(value).strip().splitlines()[-1] if value else "the job failed", file=sys.stderr)
        return None
    return value
