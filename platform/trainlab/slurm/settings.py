"""The ``launcher.slurm`` section of an experiment file, checked before anything is submitted.

Example (any key overridable on the command line, e.g. ``launcher.slurm.partition=gpu``)::

    launcher:
      slurm:
        partition: gpu            # default: the cluster's default partition
        time: "2:00:00"           # per array task: minutes, or [D-]HH:MM:SS (default 60 minutes)
        cpus_per_task: 4
        mem: 16G                  # SLURM's --mem (a number is megabytes)
        gpus_per_node: 1          # --devices-per-trial K sets K when trials train on GPUs
        account: my-project
        qos: normal
        signal_delay_s: 120       # SIGUSR2 this long before the time limit
        sbatch: {constraint: a100, exclusive: true}   # any other sbatch flag: --constraint=a100 --exclusive
        folder: slurm_logs        # where submitit keeps the scripts and each task's output
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from trainlab.errors import ConfigError

PREFIX = "launcher.slurm"
DEFAULT_TIME_MIN = 60
_FLAG = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class SlurmSettings:
    partition: str | None = None
    time_min: int = DEFAULT_TIME_MIN
    cpus_per_task: int | None = None
    mem: str | None = None
    gpus_per_node: int | None = None
    account: str | None = None
    qos: str | None = None
    signal_delay_s: int = 120
    sbatch: dict[str, Any] = field(default_factory=dict)
    folder: str = "slurm_logs"
    nodes: int = 1  # a training job's shape (trainer.num_nodes x trainer.devices); a study task is one process
    tasks_per_node: int = 1
    threads: int | None = None  # a training job's torch threads (reproduce: as recorded); default the task's cores

    def submitit_parameters(self, job_name: str) -> dict[str, Any]:
        """submitit's SlurmExecutor parameters (its own names; the rest goes to ``additional_parameters``)."""
        params: dict[str, Any] = {"job_name": job_name, "time": self.time_min, "signal_delay_s": self.signal_delay_s,
                                  "nodes": self.nodes, "ntasks_per_node": self.tasks_per_node}
        for key in ("partition", "cpus_per_task", "gpus_per_node", "account", "qos"):
            if getattr(self, key) is not None:
                params[key] = getattr(self, key)
        extra = {key.replace("_", "-"): value for key, value in self.sbatch.items()}
        if self.mem is not None:
            extra["mem"] = self.mem  # as written: submitit's own mem takes gigabytes as a number
        if extra:
            params["additional_parameters"] = extra
        return params


def slurm_settings(launcher: Any, gpus_per_trial: int | None = None) -> SlurmSettings:
    """``launcher.slurm`` of an experiment file as :class:`SlurmSettings`; ConfigError naming the key otherwise."""
    if launcher is None:
        launcher = {}
    if not isinstance(launcher, dict):
        raise ConfigError("launcher", launcher, "a mapping with a slurm section")
    unknown = [key for key in launcher if key != "slurm"]
    if unknown:
        raise ConfigError(f"launcher.{unknown[0]}", expected="slurm (the only launcher with settings)")
    section = launcher.get("slurm") or {}
    if not isinstance(section, dict):
        raise ConfigError(PREFIX, section, "a mapping of sbatch settings (partition, time, cpus_per_task, mem, ...)")
    known = {f for f in SlurmSettings.__dataclass_fields__ if f not in ("time_min", "nodes", "tasks_per_node", "threads")} | {"time"}
    for key in section:
        if key not in known:
            raise ConfigError(f"{PREFIX}.{key}", expected=f"a key among {', '.join(sorted(known))}", hint="other sbatch flags go under launcher.slurm.sbatch")
    values: dict[str, Any] = {}
    for key in ("partition", "account", "qos", "folder"):
        if section.get(key) is not None:
            values[key] = _text(key, section[key])
    for key, low in (("cpus_per_task", 1), ("gpus_per_node", 0), ("signal_delay_s", 1)):
        if section.get(key) is not None:
            values[key] = _integer(key, section[key], low)
    if section.get("time") is not None:
        values["time_min"] = _minutes(section["time"])
    if section.get("mem") is not None:
        values["mem"] = _mem(section["mem"])
    if section.get("sbatch") is not None:
        values["sbatch"] = _flags(section["sbatch"])
    if gpus_per_trial:
        values["gpus_per_node"] = gpus_per_trial  # --devices-per-trial K on GPUs: K GPUs per array task
    return SlurmSettings(**values)


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise ConfigError(f"{PREFIX}.{key}", value, "a name without spaces")
    return value


def _integer(key: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{PREFIX}.{key}", value, f"an integer >= {low}")
    return value


def _minutes(value: Any) -> int:
    """SLURM's time forms: minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]] -> whole minutes (at least 1)."""
    expected = 'minutes (90) or "[D-]HH:MM:SS" ("2:00:00", "1-12:00:00")'
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(value).strip()) if isinstance(value, str) else None
    if not match:
        raise ConfigError(f"{PREFIX}.time", value, expected)
    days, first, second, third = (int(g) if g else 0 for g in match.groups())
    if days or third or match.group(4):
        seconds = days * 86400 + first * 3600 + second * 60 + third
    elif match.group(3):  # MM:SS
        seconds = first * 60 + second
    else:
        seconds = first * 60
    if seconds <= 0:
        raise ConfigError(f"{PREFIX}.time", value, expected)
    return max(1, -(-seconds // 60))


def _mem(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return f"{value}M"
    if isinstance(value, str) and re.fullmatch(r"\d+[KMGT]?B?", value.strip().upper()):
        return value.strip().upper().removesuffix("B")
    raise ConfigError(f"{PREFIX}.mem", value, "a size such as 16G or 4000M (a number is megabytes)")


def _flags(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{PREFIX}.sbatch", value, "a mapping of sbatch flags to values, e.g. {constraint: a100, exclusive: true}")
    for key, flag_value in value.items():
        if not isinstance(key, str) or not _FLAG.match(key):
            raise ConfigError(f"{PREFIX}.sbatch.{key}", expected="an sbatch long option name without dashes, e.g. constraint")
        if key in ("array", "output", "error", "signal", "wrap"):
            raise ConfigError(f"{PREFIX}.sbatch.{key}", expected="a flag trainlab does not set itself (array, output, error and signal are the launcher's)")
        if isinstance(flag_value, (dict, list)) or flag_value is None or flag_value is False:
            raise ConfigError(f"{PREFIX}.sbatch.{key}", flag_value, "a single value, or true for a flag without one")
    return dict(value)
