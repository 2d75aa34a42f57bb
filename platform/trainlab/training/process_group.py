"""``fit_run`` in a process group of its own, for a command that runs several trainings in a row.

Lightning's ``ddp`` strategy re-executes the command that started it for every extra rank; a command
such as ``trainlab confirm`` (a loop over configs and seeds) would be re-executed whole. So it hands
each multi-process training to ``python -m trainlab.training.process_group``, which Lightning may
re-execute freely: every rank trains the one config, rank 0 records the run and writes its result.

Example::

    result = fit_run_in_process_group(config, uri, parent_run_id=parent, tags={"trainlab.kind": "confirmation"})
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

OUTPUT_TAIL_LINES = 5


def fit_run_in_process_group(config, tracking_uri: str, *, parent_run_id: str | None = None, tags: Mapping[str, str] | None = None):
    """Like :func:`~trainlab.training.fit_run.fit_run`, in a new process group; raises ``RunEnded`` the same way."""
    import torch

    from trainlab.studies.stale import end_mlflow_run
    from trainlab.training.fit_run import RunEnded, RunResult
    from trainlab.training.processes import group_environment, processes_for, stop_group

    threads = max(1, torch.get_num_threads() // processes_for(config.document["trainer"]))
    with tempfile.TemporaryDirectory(prefix="trainlab-run-group-") as folder:
        names = ("launch.json", "result.json", "run_id", "run_process.log")
        launch_path, result_path, run_id_path, log_path = (Path(folder) / name for name in names)
        launch = {
            "config": config.to_yaml(),
            "tracking_uri": tracking_uri,
            "parent_run_id": parent_run_id,
            "tags": dict(tags or {}),
            "result_path": str(result_path),
            "run_id_path": str(run_id_path),
            "threads": threads,
        }
        launch_path.write_text(json.dumps(launch))
        command = [sys.executable, "-m", "trainlab.training.process_group", "--launch", str(launch_path)]
        with log_path.open("w") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=group_environment(threads), start_new_session=True)
            try:
                code = process.wait()
            except BaseException:
                stop_group(process)
                raise
        run_id = run_id_path.read_text() if run_id_path.exists() else None
        keep_output(tracking_uri, run_id, log_path)
        if not result_path.exists():
            reason = f"the run's process group exited with code {code} before reporting: {output_tail(log_path)}"
            end_mlflow_run(tracking_uri, run_id, "FAILED", reason)  # rank 0 died before it could end its run
            raise RunEnded(RunResult(run_id, "FAILED", reason=reason))
        fields = json.loads(result_path.read_text())
        fields["history"] = {name: [tuple(point) for point in points] for name, points in fields["history"].items()}
        result = RunResult(**fields)
    if result.status != "FINISHED":
        raise RunEnded(result)
    return result


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


def run_launched(launch: dict[str, Any]) -> None:
    """Every rank trains; rank 0 writes the run's id as soon as it exists, and its result at the end."""
    import yaml

    from trainlab.config import resolve_run_config
    from trainlab.training.fit_run import RunEnded, fit_run
    from trainlab.training.processes import end_group_after_failure, is_rank_zero

    config = resolve_run_config(yaml.safe_load(launch["config"]))
    if not is_rank_zero():
        try:
            fit_run(config, launch["tracking_uri"])
        except Exception:  # RunEnded included: this rank may have failed alone
            traceback.print_exc()
            end_group_after_failure()
        return
    try:
        result = fit_run(
            config,
            launch["tracking_uri"],
            parent_run_id=launch["parent_run_id"],
            tags=launch["tags"],
            on_run_created=lambda run_id: Path(launch["run_id_path"]).write_text(run_id),
        )
    except RunEnded as ended:
        result = ended.result
    partial = Path(launch["result_path"] + ".partial")
    partial.write_text(json.dumps(asdict(result)))
    os.replace(partial, launch["result_path"])  # the launcher reads a whole result or none


def main(argv: list[str] | None = None) -> int:
    from trainlab.training.processes import follow_the_group
    from trainlab.training.quiet import quiet_lightning

    parser = argparse.ArgumentParser(prog="python -m trainlab.training.process_group", description=__doc__)
    parser.add_argument("--launch", required=True, help="the launch file the launching command wrote")
    args = parser.parse_args(argv)
    follow_the_group()
    launch = json.loads(Path(args.launch).read_text())
    import torch

    torch.set_num_threads(launch["threads"])
    quiet_lightning()
    try:
        run_launched(launch)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
