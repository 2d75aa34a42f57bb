"""Process groups of our own: how many processes Lightning runs for a ``trainer`` section, and how to
launch, follow and stop a group of them.

Lightning's ``ddp`` strategy re-executes the launching command for every extra rank, so
:func:`~trainlab.training.launch.launch` asks :func:`processes_for` first and, when it is more than one,
starts the training with :func:`run_as_group` as ``python -m trainlab.training.group_member --launch
launch.json``, whose every rank calls :func:`follow_the_group`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Set by torchrun or a Lightning launcher: a new process group must not inherit them, or its rank 0
# would believe it is some other rank of some other group.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")
# Cluster environments Lightning detects (SLURM, torchelastic, MPI, LSF): inside a `trainlab study` worker
# running under `sbatch`, a trial's group would otherwise take the allocation's task count as its own
# world size and launch no ranks of its own.
CLUSTER_VARIABLE_PREFIXES = ("SLURM_", "TORCHELASTIC_", "OMPI_COMM_WORLD_", "PMI_", "LSB_", "JSM_")
STOP_GRACE_S = 60.0
OUTPUT_TAIL_LINES = 5


def processes_for(trainer: dict[str, Any]) -> int:
    """How many processes Lightning will run for this (resolved) ``trainer`` section."""
    if strategy_name(trainer.get("strategy")) in ("single_device", "dp"):
        return 1
    return _device_count(trainer.get("devices", "auto"), trainer.get("accelerator", "auto")) * int(trainer.get("num_nodes") or 1)


def strategy_name(strategy: Any) -> str:
    if isinstance(strategy, dict):  # class_path form
        return str(strategy.get("class_path", "")).rsplit(".", 1)[-1].lower()
    return str(strategy or "auto").lower()


def group_environment(threads: int) -> dict[str, str]:
    """The environment of a new process group: no inherited rank variables, ``threads`` per rank."""
    env = {key: value for key, value in os.environ.items() if key not in RANK_VARIABLES and not key.startswith(CLUSTER_VARIABLE_PREFIXES)}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    return env


def is_rank_zero() -> bool:
    """Whether this process is global rank 0, as Lightning counts ranks (``RANK``, ``LOCAL_RANK``, SLURM, ...)."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return rank_zero_only.rank == 0


def started_as_rank() -> bool:
    """Whether something outside trainlab already started this process as one rank of a run: torchrun
    (``RANK``), or ``srun`` with several tasks. Such a run trains in-process, never as a group of its own."""
    return "RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1


_terminated = False  # set once this process received SIGTERM


def interrupt_on_sigterm() -> None:
    """SIGTERM (what SLURM and Kubernetes send) behaves like Ctrl-C: the run in progress ends KILLED
    instead of being left RUNNING. Every entry point installs it: the CLI, study workers, group members.
    Both signals also retire the pooled SQLite connections (see :mod:`trainlab.tracking.sqlite_wal`)."""
    from trainlab.tracking.sqlite_wal import forget_pooled_connections

    def interrupt(signum, frame):
        global _terminated
        _terminated = True
        forget_pooled_connections()
        raise KeyboardInterrupt(f"signal {signum}")

    def ctrl_c(signum, frame):
        forget_pooled_connections()
        signal.default_int_handler(signum, frame)  # Python's own: KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where the caller ignores Ctrl-C
        signal.signal(signal.SIGINT, ctrl_c)


def terminated() -> bool:
    """Whether this process received SIGTERM (rather than a Ctrl-C)."""
    return _terminated


def interrupt_reason() -> str:
    """The reason recorded on a run or trial ended by an interrupt."""
    return "interrupted by SIGTERM" if _terminated else "interrupted (Ctrl-C or SIGINT)"


def run_as_group(module: str, launch: dict[str, Any], folder: Path, log_name: str) -> tuple[int, Path]:
    """Run ``python -m module --launch folder/launch.json`` as a new process group and wait for it.

    ``launch`` (with its ``threads`` per rank) is what every rank reads; the group's output goes to
    ``folder/log_name``. Its own session: a Ctrl-C in the terminal reaches the caller alone, which then
    stops the group in order. Returns the exit code and the output's path.
    """
    launch_path, log_path = folder / "launch.json", folder / log_name
    launch_path.write_text(json.dumps(launch))
    command = [sys.executable, "-m", module, "--launch", str(launch_path)]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=group_environment(launch["threads"]), start_new_session=True)
        try:
            return process.wait(), log_path
        except BaseException:
            stop_group(process)
            raise


def keep_output(tracking_uri: str, run_id: str | None, log_path: Path) -> None:
    """A process group's output (every rank's warnings and tracebacks) goes to its run under ``logs/``:
    it is where a user looks when a multi-process run misbehaves."""
    from trainlab.tracking.store import tracking_client

    if run_id is None or not log_path.exists() or log_path.stat().st_size == 0:
        return
    try:
        tracking_client(tracking_uri).log_artifact(run_id, str(log_path), "logs")
    except Exception as exc:  # the outcome matters more than its log
        print(f"trainlab: could not keep the process group's output on run {run_id} ({exc})", file=sys.stderr)


def output_tail(log_path: Path) -> str:
    """The last lines of a group's output, on one line, for a failure reason."""
    lines = log_path.read_text(errors="replace").strip().splitlines() if log_path.exists() else []
    return " | ".join(lines[-OUTPUT_TAIL_LINES:]) or "no output"


def stop_group(process: subprocess.Popen) -> None:
    """Stop a group started with ``start_new_session=True`` in order: SIGINT to rank 0, which ends its run
    KILLED and kills the other ranks; whatever is left after a minute is killed.

    Not SIGTERM: Lightning's SIGTERM handler broadcasts to ranks that may sit in a barrier, a hang until
    the gloo timeout. A second Ctrl-C (or a SIGTERM) while waiting must not leave the group behind.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_S
    while process.poll() is None and time.monotonic() < deadline:
        try:
            process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:
            continue
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def end_group_after_failure(grace_s: float = STOP_GRACE_S) -> None:
    """On a rank > 0 whose training failed: give rank 0 ``grace_s`` to record the failure and exit (this
    rank then dies with it, by its parent-death signal). A rank 0 still there is stuck in a collective,
    waiting for this rank; kill the whole group, so that the launcher learns of it now rather than at the
    collective timeout (30 minutes)."""
    time.sleep(grace_s)
    os.killpg(os.getpgid(0), signal.SIGKILL)


def follow_the_group() -> None:
    """In every rank of a launched group: stop on the launcher's interrupt, die with the process above.

    Rank 0 gets SIGINT when its launcher dies (even by kill -9) and ends its run KILLED; Lightning then
    kills the other ranks, which own nothing and get SIGKILL should rank 0 vanish first.
    """
    interrupt_on_sigterm()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when the launcher was started with SIGINT ignored
    die_with_parent(signal.SIGINT if is_rank_zero() else signal.SIGKILL)


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Linux: get ``signum`` when the parent dies (even by kill -9), so no orphan keeps training."""
    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signum)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signum)


def _device_count(devices: Any, accelerator: Any) -> int:
    """Lightning's meaning of ``trainer.devices``: a count, a list of indices, "0,1", -1 or "auto" (all).

    Not Lightning's ``Accelerator.parse_devices``: it validates against the devices present (a CPU box
    refuses ``[0, 1]``, a GPU accelerator without GPUs raises), while this counts what a config asks for,
    before the machine that will run it is known (a study planned here, trained on a worker's GPUs)."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str):
        text = devices.strip()
        if "," in text:
            return len([part for part in text.split(",") if part.strip()])
        devices = -1 if text in ("auto", "-1") else int(text) if text.isdigit() else 1
    if devices == -1:
        return _all_devices(str(accelerator or "auto").lower())
    return max(1, int(devices))


def _all_devices(accelerator: str) -> int:
    """What devices "auto"/-1 stand for: every GPU on a GPU (or auto) accelerator, one CPU process otherwise."""
    if accelerator in ("gpu", "cuda", "auto"):
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count()
    return 1
