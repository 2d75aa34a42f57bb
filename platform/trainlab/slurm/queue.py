"""SLURM's queue, as ``squeue`` shows it (accounting, hence ``sacct``, may not be there)."""

from __future__ import annotations

import shutil
import subprocess


def queued_states(job_id: str, *, tasks: bool = True) -> list[str] | None:
    """States of ``job_id`` (an array id, or one task ``JOBID_TASK``) still in the queue, pending ones
    included (one per array task with ``tasks``); [] once it has left; None where squeue cannot say."""
    if shutil.which("squeue") is None:
        return None
    try:
        done = subprocess.run(["squeue", "-h", *(["-r"] if tasks else []), "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        # "Invalid job id specified": the job has left the queue; anything else (controller away): unknown
        return [] if "invalid job id" in (done.stderr or "").lower() else None
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]
