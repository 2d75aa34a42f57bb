"""``fit_run`` in a process group of its own, for a command that runs several trainings in a row.

Lightning's ``ddp`` strategy re-executes the command that started it for every extra rank; a command
such as ``trainlab confirm`` (a loop over configs and seeds) would be re-executed whole. So it hands
each multi-process training to ``python -m trainlab.training.process_group``, which Lightning may
re-execute freely: every rank trains the one config, rank 0 records the run and writes its result.

Example::

    result = fit_run_in_process_group(config, uri, parent_run_id=parent, tags={"trainlab.kind": "confirmation"})
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any


def fit_run_in_process_group(config, tracking_uri: str, *, parent_run_id: str | None = None, tags: Mapping[str, str] | None = None):
    """Like :func:`~trainlab.training.fit_run.fit_run`, in a new process group; raises ``RunEnded`` the same way."""
    import torch

    from trainlab.studies.stale import end_mlflow_run
    from trainlab.training.fit_run import RunEnded, RunResult
    from trainlab.training.processes import keep_output, output_tail, processes_for, run_as_group

    threads = max(1, torch.get_num_threads() // processes_for(config.document["trainer"]))
    with tempfile.TemporaryDirectory(prefix="trainlab-run-group-") as folder:
        result_path, run_id_path = Path(folder) / "result.json", Path(folder) / "run_id"
        launch = {
            "config": config.to_yaml(),
            "tracking_uri": tracking_uri,
            "parent_run_id": parent_run_id,
            "tags": dict(tags or {}),
            "result_path": str(result_path),
            "run_id_path": str(run_id_path),
            "threads": threads,
        }
        code, log_path = run_as_group("trainlab.training.process_group", launch, Path(folder), "run_process.log")
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
    from trainlab.training.processes import group_member_main
    from trainlab.training.quiet import quiet_lightning

    return group_member_main(argv, "python -m trainlab.training.process_group", __doc__, run_launched, quiet_lightning)


if __name__ == "__main__":
    sys.exit(main())
