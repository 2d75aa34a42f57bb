"""Submitting study workers as one SLURM job array (submitit), after sbatch has accepted the script.

Order matters for bad input: :func:`require_sbatch` and :func:`check_with_sbatch` run before the study or
its parent run exist, so a missing sbatch, an unknown partition or account is one line and nothing is
recorded or submitted. ``sbatch --test-only`` is SLURM's own validation of exactly the script submitted.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainlab.errors import ConfigError
from trainlab.slurm.settings import PREFIX, SlurmSettings


MAX_TIME_LIMIT_REQUEUES = 100  # 100 time limits of one task: a study worker of 1-hour slots runs 100 hours


@dataclass(frozen=True)
class SubmittedArray:
    job_id: str  # the array's id (tasks are JOBID_0 .. JOBID_N-1)
    tasks: int
    folder: Path  # launcher.slurm.folder: submitit keeps each task's pickles and output in JOBID_TASK/ under it
    jobs: list[Any]  # submitit Job objects, one per task (their results say how each ended)

    def task_ids(self) -> list[str]:
        """SLURM's names of the tasks (submitit submits a single task as a plain job, not an array)."""
        return [job.job_id for job in self.jobs]

    def log_hint(self) -> str:
        stdout = str(self.jobs[0].paths.stdout)
        if self.tasks > 1:
            stdout = stdout.replace(self.jobs[0].job_id, f"{self.job_id}_<task>")
        return stdout + " (.err beside it)"


def require_sbatch() -> None:
    if shutil.which("sbatch") is None:
        raise ConfigError("--launcher", "slurm", "sbatch on PATH", hint="run on a SLURM login node, or install SLURM's client tools (slurm-client)")


def check_with_sbatch(settings: SlurmSettings, job_name: str, tasks: int) -> None:
    """``sbatch --test-only`` on the script that would be submitted: sbatch's own reason, in one line, when it refuses."""
    from submitit.slurm.slurm import _make_sbatch_string  # the script submitit will write, same parameters

    array = {"map_count": tasks} if tasks > 1 else {}
    script = _make_sbatch_string(command="true", folder=Path(settings.folder).absolute(), **array, **settings.submitit_parameters(job_name))
    done = subprocess.run(["sbatch", "--test-only"], input=script, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        lines = [line.strip().removeprefix("sbatch: error: ").strip() for line in (done.stderr or done.stdout).splitlines()]
        reason = "sbatch: " + ("; ".join(line for line in lines if line) or f"exit code {done.returncode}")
        key = _refused_key(reason, settings)
        if key == PREFIX:
            raise ConfigError(PREFIX, expected="settings sbatch accepts", hint=reason)
        raise ConfigError(key, _refused_value(key, settings), "a value sbatch accepts", hint=reason)


def submit_workers(settings: SlurmSettings, job_name: str, tasks: int, function, *args) -> SubmittedArray:
    """``tasks`` array tasks, each calling ``function(*args)`` in a fresh Python (this interpreter, this
    working directory); a callable with a ``checkpoint`` method is requeued on SIGUSR2 (submitit's protocol)."""
    import submitit

    folder = Path(settings.folder).absolute() / "%j"
    # submitit requeues a task on its time-limit signal at most max_num_timeout times (default 3), then
    # raises inside the running trial: a study worker is meant to go on slot after slot.
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_TIME_LIMIT_REQUEUES)
    executor.update_parameters(**settings.submitit_parameters(job_name))
    with executor.batch():
        jobs = [executor.submit(function, *args) for _ in range(tasks)]
    job_id = jobs[0].job_id.split("_")[0]
    return SubmittedArray(job_id, tasks, folder.parent, jobs)


def _refused_key(reason: str, settings: SlurmSettings) -> str:
    lowered = reason.lower()
    # Account first: SLURM's "Invalid account or account/partition combination specified" names both.
    for key in ("account", "qos", "partition"):
        if key in lowered and getattr(settings, key) is not None:
            return f"{PREFIX}.{key}"
    if "feature" in lowered and "constraint" in settings.sbatch:
        return f"{PREFIX}.sbatch.constraint"
    return PREFIX


def _refused_value(key: str, settings: SlurmSettings) -> Any:
    name = key.removeprefix(PREFIX + ".")
    if name.startswith("sbatch."):
        return settings.sbatch[name.split(".", 1)[1]]
    return getattr(settings, name)


def unshared_store_warning(storage_url: str, tracking_uri: str) -> str | None:
    """One line when the study storage or the tracking store is a file: every node must see that path."""
    from trainlab.studies.storage import is_rdb_url
    from trainlab.tracking.store import sqlite_path

    files = [path for path in (None if is_rdb_url(storage_url) else storage_url, sqlite_path(tracking_uri)) if path]
    if "://" not in tracking_uri and tracking_uri:  # a plain folder store (file:// too below)
        files.append(tracking_uri)
    elif tracking_uri.startswith("file:"):
        files.append(tracking_uri)
    if not files:
        return None
    return (
        f"warning: --launcher slurm: {' and '.join(files)} must be on a filesystem every node sees "
        "(fine on a one-node cluster); across machines use --storage postgresql://... and an MLflow server "
        "(--tracking-uri http://...)"
    )
