"""How a study's trials map onto devices: processes per trial, device slots per worker, thread budgets.

``trainlab study … --jobs N --devices-per-trial K`` runs N workers; worker ``i`` sees only its own K GPUs
(``CUDA_VISIBLE_DEVICES``), so 8 GPUs run 8 one-GPU trials or 2 four-GPU trials side by side. Each trial
then trains on ``trainer.devices=K``; with K > 1 it is a DDP trial, run as its own process group (see
:func:`trainlab.training.launch.launch`). On a CPU machine K processes per trial share the worker's cores.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from trainlab.config.experiment import set_dotted
from trainlab.errors import ConfigError
from trainlab.training.processes import processes_for, strategy_name

# Strategies whose extra ranks are forked or spawned from the launching process: they would carry the
# worker's Optuna trial into children that cannot report through it. ``ddp`` re-executes a command instead,
# which is what a trial's own process group is built on.
_FORKING_STRATEGY_WORDS = ("spawn", "fork", "notebook")


def with_devices_per_trial(run: dict[str, Any], devices_per_trial: int | None) -> dict[str, Any]:
    """The run config a trial trains with under ``--devices-per-trial K``: ``trainer.devices=K``, and DDP
    for K > 1 unless the config already names a strategy."""
    if not devices_per_trial:
        return run
    run = copy.deepcopy(run)
    set_dotted(run, "trainer.devices", devices_per_trial)
    strategy = (run.get("trainer") or {}).get("strategy")
    if devices_per_trial > 1 and strategy in (None, "auto"):
        set_dotted(run, "trainer.strategy", "ddp")
    return run


def check_trial_launchable(trainer: dict[str, Any]) -> None:
    """Refuse, before a study starts, trial settings that a trial's own process group cannot run."""
    nodes = trainer.get("num_nodes") or 1
    if nodes > 1:
        raise ConfigError(
            "trainer.num_nodes", nodes, "1 in a study: a trial's process group runs on one machine",
            hint="to use several machines, start one `trainlab study` worker per machine on a shared --storage",
        )
    if processes_for(trainer) == 1:
        return
    strategy = strategy_name(trainer.get("strategy"))
    start_method = (trainer["strategy"].get("init_args") or {}).get("start_method", "popen") if isinstance(trainer.get("strategy"), dict) else "popen"
    if start_method != "popen":  # DDPStrategy(start_method="spawn") spawns its ranks too
        raise ConfigError(
            "trainer.strategy.init_args.start_method", start_method, "popen (the default) for a multi-device trial",
            hint="spawned ranks cannot report to the Optuna trial; trainlab launches a ddp trial as its own process group",
        )
    if any(word in strategy for word in _FORKING_STRATEGY_WORDS):
        raise ConfigError(
            "trainer.strategy", strategy, "ddp for a multi-device trial",
            hint="spawned ranks cannot report to the Optuna trial; trainlab launches a ddp trial as its own process group",
        )


def trial_gpu_count(trainer: dict[str, Any], devices_per_trial: int | None) -> int | None:
    """GPUs one trial asks for: ``--devices-per-trial``, else an explicit ``trainer.devices`` count, else
    None ("auto": whatever its worker's slot holds); 0 for a trial that trains on the CPU."""
    if str(trainer.get("accelerator", "auto")).lower() == "cpu":
        return 0
    if devices_per_trial:
        return devices_per_trial
    devices = trainer.get("devices", "auto")
    if devices in ("auto", -1, "-1"):
        return None
    return processes_for({**trainer, "num_nodes": 1})


def device_slots(jobs: int, devices_per_trial: int | None, visible: list[str]) -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` for each of ``jobs`` workers, or None when there is nothing to pin.

    With ``devices_per_trial`` > 1 (see :func:`trial_gpu_count`) every worker gets that many GPUs of its
    own (an error when they are not there). Otherwise several workers on a GPU machine get one GPU each,
    round robin when there are more workers than GPUs (small models share a GPU well).

    Example::

        device_slots(2, 4, ["0", "1", "2", "3", "4", "5", "6", "7"])  # -> ["0,1,2,3", "4,5,6,7"]
    """
    if not visible:
        return None
    if devices_per_trial and devices_per_trial > 1:
        needed = jobs * devices_per_trial
        if needed > len(visible):
            raise ConfigError(
                "--devices-per-trial", devices_per_trial,
                f"at most {len(visible) // jobs or 1} with --jobs {jobs}: {jobs} x {devices_per_trial} needs {needed} GPUs, this machine shows {len(visible)}",
            )
        return [",".join(visible[i * devices_per_trial : (i + 1) * devices_per_trial]) for i in range(jobs)]
    if jobs == 1:
        return None
    return [visible[i % len(visible)] for i in range(jobs)]


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (the variable is honoured)."""
    import torch

    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [entry.strip() for entry in listed.split(",") if entry.strip()][: torch.cuda.device_count()]
    return [str(index) for index in range(torch.cuda.device_count())]
