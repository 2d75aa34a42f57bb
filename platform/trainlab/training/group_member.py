"""One member of a run's process group: ``python -m trainlab.training.group_member --launch launch.json``.

:func:`~trainlab.training.launch.launch` starts rank 0; Lightning's ``ddp`` strategy re-executes the same
command for ranks 1..N-1. Every rank trains the launch file's config with its role's callbacks. Rank 0
records the run, writes the run id as soon as the run exists and, at the end, its result or the exception
that ended it. Ranks > 0 own nothing: a run that ends on every rank (finished, pruned, failed) ends here
quietly; a rank that fails alone waits for rank 0 to record the failure, then ends the group.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any


def run_launched(launch: dict[str, Any]) -> None:
    import yaml

    from trainlab.class_paths import import_class
    from trainlab.config import RunConfig
    from trainlab.training.fit_run import fit_run, is_pruned
    from trainlab.training.launch import train_here, write_report
    from trainlab.training.processes import end_group_after_failure, is_rank_zero
    from trainlab.training.resume import ResumeFrom

    config = RunConfig(yaml.safe_load(launch["config"]))  # resolved by the launcher, its seed included
    role = import_class(launch["role"]["class"]).from_launch(launch["role"]["fields"])
    resume = ResumeFrom(**launch["resume"]) if launch.get("resume") else None
    if not is_rank_zero():
        try:
            fit_run(config, launch["tracking_uri"], callbacks=role.callbacks(), resume=resume)
        except Exception as exc:  # RunEnded included: this rank may have failed alone
            if not is_pruned(exc):  # a pruning decision is rank 0's, broadcast to all: rank 0 reports it
                traceback.print_exc()
                end_group_after_failure()
        return

    def keep_run_id(run_id: str) -> None:
        Path(launch["run_id_path"]).write_text(run_id)

    try:
        result = train_here(config, launch["tracking_uri"], launch["parent_run_id"], launch["tags"], role.callbacks(), role, keep_run_id, resume)
    except Exception as exc:  # RunEnded, a pruned trial, bad input: the launcher raises the same
        print(f"rank 0: {type(exc).__name__}: {exc}", flush=True)
        write_report(launch["result_path"], raised=exc)
        return
    print(f"rank 0: run {result.run_id} {result.status}", flush=True)
    write_report(launch["result_path"], result=result)


def main(argv: list[str] | None = None) -> int:
    """On every rank: follow the launcher, read the launch file, train."""
    from trainlab.training.processes import follow_the_group
    from trainlab.training.quiet import quiet_lightning

    parser = argparse.ArgumentParser(prog=f"python -m {__name__}", description=__doc__)
    parser.add_argument("--launch", required=True, help="the launch file the launching command wrote")
    args = parser.parse_args(argv)
    follow_the_group()
    launch = json.loads(Path(args.launch).read_text())
    if launch.get("progress_path"):  # the group's output is a log file: the epoch lines go to the launcher
        import os

        from trainlab.training.progress import PROGRESS_FILE_ENV

        os.environ[PROGRESS_FILE_ENV] = launch["progress_path"]
    import torch

    torch.set_num_threads(launch["threads"])
    quiet_lightning()
    from trainlab.secrets import masked_terminal

    try:
        with masked_terminal():  # the group's output is kept on the run (logs/): no password in it
            run_launched(launch)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
