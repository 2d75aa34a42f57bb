"""A trial that needs several processes (DDP), run as its own process group.

Lightning's ``ddp`` strategy starts the extra ranks by re-executing the command that started rank 0. A
study worker must never be re-executed (it would become one more worker), so the worker launches this
module for the one trial, and Lightning re-executes *this* module for ranks 1..N-1::

    worker ── python -m trainlab.studies.trial_process --launch trial.json        rank 0
                 └─ Lightning ── the same command, LOCAL_RANK=1..N-1              ranks > 0

Rank 0 re-attaches to the RUNNING Optuna trial through the study storage, reports every epoch and is
pruned through it, owns the MLflow run, and writes how the trial ended to an outcome file. The worker,
which keeps the trial's heartbeat, waits and tells Optuna. Ranks > 0 never touch the storage: they train
with the values the worker already sampled, read from the launch file.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import yaml


def run_in_process_group(trial, context, ranks: int):
    """Worker side: launch ``trial`` as a process group of ``ranks`` processes, wait, return its outcome.

    The group's output goes to a log; its last lines become the failure reason if the group dies before
    reporting. Interrupting the worker (Ctrl-C, SIGTERM) stops the group first.
    """
    import torch

    from trainlab.studies.loading import experiment_document
    from trainlab.studies.stale import end_mlflow_run
    from trainlab.studies.trial import MLFLOW_RUN_ATTR, TrialOutcome
    from trainlab.training.processes import keep_output, output_tail, run_as_group

    if context.storage_url is None:
        raise ValueError("a multi-process trial needs the study's storage URL in its TrialContext")
    threads = max(1, torch.get_num_threads() // ranks)  # the worker's share of the cores, split over ranks
    with tempfile.TemporaryDirectory(prefix=f"trainlab-trial-{trial.number}-") as folder:
        outcome_path = Path(folder) / "outcome.json"
        launch = {
            "storage_url": context.storage_url,
            "study_name": context.spec.name,
            "trial_number": trial.number,
            "params": trial.params,
            "experiment": yaml.safe_dump(experiment_document(context.experiment), sort_keys=False),
            "n_trials": context.spec.n_trials,
            "timeout": context.spec.timeout,
            "tracking_uri": context.tracking_uri,
            "parent_run_id": context.parent_run_id,
            "devices_per_trial": context.devices_per_trial,
            "outcome_path": str(outcome_path),
            "threads": threads,
        }
        code, log_path = run_as_group("trainlab.studies.trial_process", launch, Path(folder), "trial_process.log")
        # Set by rank 0 through the storage; this Trial object's own user_attrs are a cache from before.
        run_id = trial.storage.get_trial_user_attrs(trial._trial_id).get(MLFLOW_RUN_ATTR)
        keep_output(context.tracking_uri, run_id, log_path)
        if outcome_path.exists():
            return TrialOutcome(**json.loads(outcome_path.read_text()))
        reason = f"the trial's {ranks}-process group exited with code {code} before reporting: {output_tail(log_path)}"
        end_mlflow_run(context.tracking_uri, run_id, "FAILED", reason)  # rank 0 died before it could end its run
        return TrialOutcome("fail", reason=reason)


def run_launched_trial(launch: dict[str, Any]) -> None:
    """Process side, on every rank: rebuild the trial's context and train; rank 0 reports the outcome."""
    from trainlab.studies.trial import attempt_trial, run_trial
    from trainlab.training.processes import end_group_after_failure, is_rank_zero

    context = _context(launch)
    if not is_rank_zero():
        import optuna

        # The values are fixed; this rank's result is rank 0's to report.
        try:
            run_trial(optuna.trial.FixedTrial(launch["params"], number=launch["trial_number"]), context)
        except optuna.TrialPruned:
            pass  # rank 0 decided it and reports it
        except Exception:
            traceback.print_exc()
            end_group_after_failure()
        return
    trial = _attach(launch, context)
    outcome = attempt_trial(trial, context)
    print(f"trial {trial.number}: {outcome.state} {outcome.value if outcome.value is not None else outcome.reason or ''}".rstrip(), flush=True)
    partial = Path(launch["outcome_path"] + ".partial")
    partial.write_text(json.dumps(outcome.to_json()))
    os.replace(partial, launch["outcome_path"])  # the worker reads a whole outcome or none


def _context(launch: dict[str, Any]):
    from trainlab.studies.loading import split_experiment
    from trainlab.studies.spec import load_study_spec
    from trainlab.studies.trial import TrialContext

    experiment = split_experiment(yaml.safe_load(launch["experiment"]))
    spec = load_study_spec(experiment, n_trials=launch["n_trials"], timeout=launch["timeout"], name=launch["study_name"], check_run=False)
    return TrialContext(experiment, spec, launch["tracking_uri"], launch["parent_run_id"], launch["storage_url"], launch["devices_per_trial"])


def _attach(launch: dict[str, Any], context):
    """The RUNNING trial, re-opened through the storage, with the study's own pruner deciding."""
    import optuna

    from trainlab.studies.loading import load_existing_study
    from trainlab.studies.pruners import build_pruner

    study, storage = load_existing_study(launch["storage_url"], launch["study_name"])
    study.pruner = build_pruner(context.spec.pruner, context.spec.max_epochs)
    # Optuna has no public "trial by number" for a running trial; its integrations re-attach the same way.
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, launch["trial_number"])
    return optuna.trial.Trial(study, trial_id)


def main(argv: list[str] | None = None) -> int:
    from trainlab.studies.worker import quiet_for_studies
    from trainlab.training.processes import group_member_main

    return group_member_main(argv, "python -m trainlab.studies.trial_process", __doc__, run_launched_trial, quiet_for_studies)


if __name__ == "__main__":
    sys.exit(main())
