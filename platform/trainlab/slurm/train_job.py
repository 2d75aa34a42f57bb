"""``trainlab train FILE --launcher slurm``: one run as one SLURM job, one task per device (``srun``).

Every task calls :func:`~trainlab.training.launch.launch` with the same config; SLURM started them as the
run's ranks (``SLURM_NTASKS`` > 1), so each trains in-process and Lightning's ``SLURMEnvironment`` wires
them together (world size, ranks, master address from the job). Rank 0 owns the one MLflow run, as on one
machine; its :class:`~trainlab.training.fit_run.RunResult` comes back through submitit's result file.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, replace
from typing import Any

from trainlab.errors import ConfigError
from trainlab.slurm.settings import SlurmSettings


class TrainTask:
    """The callable of every task of a training job; rank 0 returns the run's result as a dict."""

    def __call__(self, config, tracking_uri: str) -> dict[str, Any] | None:
        import torch

        from trainlab.training import RunEnded, launch
        from trainlab.training.processes import interrupt_on_sigterm

        interrupt_on_sigterm()
        torch.set_num_threads(int(os.environ.get("SLURM_CPUS_PER_TASK") or 1))
        try:
            result = launch(config, tracking_uri)
        except RunEnded as ended:
            result = ended.result
        return asdict(result) if result.run_id is not None else None


def job_shape(trainer: dict[str, Any], settings: SlurmSettings) -> SlurmSettings:
    """``trainer.num_nodes`` nodes with ``trainer.devices`` tasks each (and as many GPUs, on GPUs)."""
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes") or 1
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
        raise ConfigError("trainer.devices", devices, "a number of devices per node (an integer) with --launcher slurm")
    gpus = devices if str(trainer.get("accelerator", "auto")).lower() in ("gpu", "cuda") else settings.gpus_per_node
    return replace(settings, nodes=int(nodes), tasks_per_node=devices, gpus_per_node=gpus)


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
