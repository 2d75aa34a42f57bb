"""DDP within a trial: every trial of a study trains as its own 2-process group over gloo, while the study
keeps one Optuna study, one parent run and one child run per trial, and pruning still works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import all_runs

pytestmark = pytest.mark.ddp

# SGD learning rates whose fate on digits is known: 0.1 learns, 1e-6 stays near chance (below the
# threshold pruner's 0.3 at epoch 0), 1e6 drives the loss to NaN.
OUTCOMES = {0.1: ("COMPLETE", "FINISHED"), 1e-6: ("PRUNED", "KILLED"), 1e6: ("FAIL", "FAILED")}


def _study_file(workdir: Path, study: dict, search_space: dict, max_epochs: int = 2) -> Path:
    document = {
        "seed_everything": 42,
        "model": {"class_path": "MLPClassifier", "init_args": {"hidden_sizes": [64], "dropout": 0.0}},
        "data": {"class_path": "Digits", "init_args": {"batch_size": 64, "val_fraction": 0.15}},
        "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}},
        "trainer": {"max_epochs": max_epochs, "enable_progress_bar": False, "accelerator": "cpu"},
        "tracking": {"experiment": "ddp-study"},
        "study": study,
        "search_space": search_space,
    }
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _study(workdir: Path, name: str):
    import optuna

    from trainlab.studies.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(str(workdir / "optuna_journal.log")))


def test_two_process_trials_make_one_study_one_parent_and_one_child_run_each(workdir, cli, tracking_uri, mlflow_client):
    path = _study_file(
        workdir,
        {"name": "ddp", "metric": "val/acc", "direction": "maximize", "n_trials": 3, "sampler": "grid", "pruner": {"type": "threshold", "lower": 0.3}},
        {"optimizer.init_args.lr": {"choices": list(OUTCOMES)}},
    )
    result = cli("study", str(path), "--devices-per-trial", "2")
    assert result.code == 0, result
    assert "2 device(s) per trial" in result.out

    study = _study(workdir, "ddp")
    by_lr = {trial.params["optimizer.init_args.lr"]: trial for trial in study.trials}
    assert {lr: trial.state.name for lr, trial in by_lr.items()} == {lr: states[0] for lr, states in OUTCOMES.items()}
    # Rank 0 of each group reported through the storage: every epoch for the complete trial, one for the pruned.
    assert sorted(by_lr[0.1].intermediate_values) == [0, 1]
    assert sorted(by_lr[1e-6].intermediate_values) == [0]
    assert by_lr[0.1].value == max(by_lr[0.1].intermediate_values.values())
    assert by_lr[0.1].user_attrs["trainlab.test_metrics"] == {}  # trials never touch the test set; the refit is tested

    runs = all_runs(tracking_uri)
    parents = [r for r in runs if r.data.tags.get("trainlab.kind") == "study"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = {r.info.run_id: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
    assert len(children) == 3 and len(runs) == 4, "only rank 0 of each trial may create a run"
    for lr, trial in by_lr.items():
        run = children[trial.user_attrs["mlflow_run_id"]]
        assert run.info.status == OUTCOMES[lr][1], (lr, run.info.status)
        assert run.data.params["trainer.devices"] == "2" and run.data.params["trainer.strategy"] == "ddp"
    assert children[by_lr[1e-6].user_attrs["mlflow_run_id"]].data.tags["trainlab.pruned"] == "true"

    complete = by_lr[0.1].user_attrs["mlflow_run_id"]
    assert [m.step for m in mlflow_client.get_metric_history(complete, "val/acc")] == [0, 1], "metrics logged once, by rank 0"
    environment = yaml.safe_load(open(mlflow_client.download_artifacts(complete, "environment.json", str(workdir))))
    assert environment["distributed"]["world_size"] == 2
    assert [a.path for a in mlflow_client.list_artifacts(complete)].count("config.yaml") == 1
    failed = by_lr[1e6].user_attrs["mlflow_run_id"]
    log = open(mlflow_client.download_artifacts(failed, "logs/trial_process.log", str(workdir))).read()
    assert "NonFiniteError" in log or "non-finite" in log, "the group's output is kept on the trial's run"
    # Ranks > 0 of a successful trial end quietly: no traceback, no minute-long wait to be killed.
    log = open(mlflow_client.download_artifacts(complete, "logs/trial_process.log", str(workdir / "complete"))).read()
    assert "Traceback" not in log, log[-3000:]

    # `trainlab confirm` loops over seeds in one process: each DDP re-run gets a process group of its own.
    confirmed = cli("confirm", "ddp", "--top-k", "1", "--seeds", "2")
    assert confirmed.code == 0, confirmed
    reruns = [r for r in all_runs(tracking_uri) if r.data.tags.get("trainlab.kind") == "confirmation"]
    assert sorted(r.data.tags["trainlab.seed"] for r in reruns) == ["1", "2"]
    for rerun in reruns:
        assert rerun.info.status == "FINISHED" and rerun.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert rerun.data.params["trainer.devices"] == "2" and rerun.data.tags["trainlab.confirms"] == complete


def test_a_trial_config_asking_for_ddp_runs_as_a_process_group_too(workdir, cli, tracking_uri):
    path = _study_file(
        workdir,
        {"name": "ddp-config", "metric": "val/acc", "direction": "maximize", "n_trials": 1, "sampler": "random", "pruner": "none"},
        {"model.init_args.dropout": {"low": 0.0, "high": 0.2}},
        max_epochs=1,
    )
    result = cli("study", str(path), "trainer.devices=2", "trainer.strategy=ddp", "--refit-best")
    assert result.code == 0, result
    (trial,) = _study(workdir, "ddp-config").trials
    assert trial.state.name == "COMPLETE"
    (run,) = [r for r in all_runs(tracking_uri) if r.data.tags.get("trainlab.kind") == "trial"]
    assert run.info.run_id == trial.user_attrs["mlflow_run_id"] and run.info.status == "FINISHED"

    # The refit of a 2-process trial trains as a process group too; rank 0 logs the trained model.
    (refit,) = [r for r in all_runs(tracking_uri) if r.data.tags.get("trainlab.kind") == "refit"]
    assert refit.info.status == "FINISHED" and refit.data.params["trainer.devices"] == "2"
    import mlflow.pytorch
    import torch

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pytorch.load_model(f"runs:/{refit.info.run_id}/model")
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_a_group_whose_rank_0_vanishes_fails_its_trial_and_run(workdir, cli, tracking_uri, monkeypatch):
    """No outcome from the group (OOM killer, segfault): the worker fails the trial and ends its run."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])))
    path = _study_file(
        workdir,
        {"name": "ddp-vanish", "metric": "val/acc", "direction": "maximize", "n_trials": 1, "sampler": "random", "pruner": "none"},
        {"model.init_args.dropout": {"low": 0.0, "high": 0.2}},
        max_epochs=3,
    )
    result = cli("study", str(path), "--devices-per-trial", "2", "model.class_path=failing_models.RankZeroDiesAtSecondEpoch")
    assert result.code == 1 and "no trial completed" in result.err, result
    trials = _study(workdir, "ddp-vanish").trials
    assert {t.state.name for t in trials} == {"FAIL"}
    assert "group exited with code 9 before reporting" in trials[0].user_attrs["trainlab.fail_reason"]
    runs = [r for r in all_runs(tracking_uri) if r.data.tags.get("trainlab.kind") == "trial"]
    assert runs and all(r.info.status == "FAILED" for r in runs), "no run may be left RUNNING"
    assert "val/acc" in runs[0].data.metrics, "the epoch recorded before the crash is kept"


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the trial's processes")
def test_kill_9_of_the_worker_stops_its_trial_group_and_the_rerun_completes(workdir, cli, tracking_uri):
    path = _study_file(
        workdir,
        {"name": "ddp-kill", "metric": "val/acc", "direction": "maximize", "n_trials": 1, "sampler": {"type": "random", "seed": 0}, "pruner": "none"},
        {"model.init_args.dropout": {"low": 0.0, "high": 0.2}},
        max_epochs=60,
    )
    command = [sys.executable, "-m", "trainlab", "study", str(path), "--devices-per-trial", "2"]
    log = (workdir / "first.log").open("w")
    first = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    victim, group = None, set()
    while victim is None:
        assert first.poll() is None, (workdir / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the trial's process group never started training"
        time.sleep(0.5)
        if (workdir / "optuna_journal.log").exists():
            trials = _study(workdir, "ddp-kill").get_trials()
            group = _descendants(first.pid)
            # Mid-trial: rank 0 made the run, and both ranks exist (rank 1 starts with the fit).
            if trials and "mlflow_run_id" in trials[0].user_attrs and len(group) >= 2:
                victim = trials[0]
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    log.close()
    deadline = time.monotonic() + 90
    while any(_alive(pid) for pid in group):
        assert time.monotonic() < deadline, "the trial's ranks outlived their killed worker"
        time.sleep(0.5)

    # The cut-short trial's run was ended by its rank 0 on the way out, not left RUNNING.
    runs = {r.info.run_id: r for r in all_runs(tracking_uri)}
    assert runs[victim.user_attrs["mlflow_run_id"]].info.status == "KILLED"

    again = cli("study", str(path), "--devices-per-trial", "2")
    assert again.code == 0, again
    trials = _study(workdir, "ddp-kill").trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert f"worker process {first.pid}" in trials[0].user_attrs["trainlab.fail_reason"]
    runs = all_runs(tracking_uri)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert len([r for r in runs if r.data.tags.get("trainlab.kind") == "trial"]) == 2, "one run per trial, none twice"
