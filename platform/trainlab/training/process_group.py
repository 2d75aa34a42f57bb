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
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

OUTPUT_TAIL_LINES = 5


def fit_run_in_process_group(config, tracking_uri: str, *, parent_run_id: str | None = None, tags: Mapping[str, str] | None = None):
    """Like :func:`~trainlab.training.fit_run.fit_run`, in a new process group; raises ``RunEnded`` the same way."""
    import torch

    from trainlab.training.fit_run import RunEnded, RunResult
    from trainlab.training.processes import group_environment, processes_for, stop_group

    threads = max(1, torch.get_num_threads() // processes_for(config.document["trainer"]))
    with tempfile.TemporaryDirectory(prefix="trainlab-run-group-") as folder:
        launch_path, result_path, log_path = (Path(folder) / name for name in ("launch.json", "result.json", "output.log"))
        launch = {
            "config": config.to_yaml(),
            "tracking_uri": tracking_uri,
            "parent_run_id": parent_run_id,
            "tags": dict(tags or {}),
            "result_path": str(result_path),
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
        if not result_path.exists():
            tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-OUTPUT_TAIL_LINES:])
            raise RunEnded(RunResult(None, "FAILED", reason=f"the run's process group exited with code {code} before reporting: {tail or 'no output'}"))
        fields = json.loads(result_path.read_text())
        fields["history"] = {name: [tuple(point) for point in points] for name, points in fields["history"].items()}
        result = RunResult(**fields)
    if result.status != "FINISHED":
        raise RunEnded(result)
    return result


def run_launched(launch: dict[str, Any]) -> None:
    """Every rank trains; rank 0 writes the run's result for the launching command."""
    import yaml

    from trainlab.config import resolve_run_config
    from trainlab.training.fit_run import RunEnded, fit_run

    config = resolve_run_config(yaml.safe_load(launch["config"]))
    try:
        result = fit_run(config, launch["tracking_uri"], parent_run_id=launch["parent_run_id"], tags=launch["tags"])
    except RunEnded as ended:
        result = ended.result
    if result.run_id is None:
        return  # a rank other than 0
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
