"""A real study end to end: trials as nested MLflow runs with their true outcome, the parent run's report,
re-running the command, --refit-best, and four worker processes on the default storage."""

from __future__ import annotations

import csv
import math
import re

import pytest
import yaml

from conftest import all_runs


def _tiny_study(workdir, study: dict, search_space: dict, **run_changes) -> str:
    document = {
        "seed_everything": 42,
        "model": {"class_path": "MLPClassifier", "init_args": {"hidden_sizes": [64], "dropout": 0.0}},
        "data": {"class_path": "Digits", "init_args": {"batch_size": 64, "val_fraction": 0.15}},
        "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}},
        "trainer": {"max_epochs": 2, "enable_progress_bar": False},
        "tracking": {"experiment": "study-test"},
        "study": study,
        "search_space": search_space,
        **run_changes,
    }
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return str(path)


def _load_study(workdir, name: str):
    import optuna

    from trainlab.studies.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(str(workdir / "optuna_journal.log")))


# SGD learning rates whose fate on digits is known: 0.1 learns, 1e-6 stays near chance (below the
# threshold pruner's 0.3 at epoch 0), 1e6 drives the loss to NaN.
OUTCOMES = {0.1: ("COMPLETE", "FINISHED"), 1e-6: ("PRUNED", "KILLED"), 1e6: ("FAIL", "FAILED")}


@pytest.mark.integration
def test_trials_are_nested_runs_with_their_outcome_and_the_parent_reports(workdir, cli, tracking_uri, mlflow_client):
    path = _tiny_study(
        workdir,
        {"name": "outcomes", "metric": "val/acc", "direction": "maximize", "n_trials": 3, "sampler": "grid", "pruner": {"type": "threshold", "lower": 0.3}},
        {"optimizer.init_args.lr": {"choices": list(OUTCOMES)}},
    )
    result = cli("study", path)
    assert result.code == 0, result

    study = _load_study(workdir, "outcomes")
    by_lr = {trial.params["optimizer.init_args.lr"]: trial for trial in study.trials}
    assert {lr: trial.state.name for lr, trial in by_lr.items()} == {lr: states[0] for lr, states in OUTCOMES.items()}
    assert re.search(r"nan|non-finite", by_lr[1e6].user_attrs["trainlab.fail_reason"], re.I)

    runs = all_runs(tracking_uri)
    parents = [r for r in runs if r.data.tags.get("trainlab.kind") == "study"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["trainlab.study"] == "outcomes"
    assert parent.data.tags["trainlab.study.metric"] == "val/acc"
    assert parent.data.tags["trainlab.study.direction"] == "maximize"
    assert parent.data.tags["trainlab.study.storage"] == str(workdir / "optuna_journal.log")
    children = {r.info.run_id: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert len(children) == 3 and len(runs) == 4
    for lr, trial in by_lr.items():
        run = children[trial.user_attrs["mlflow_run_id"]]
        assert run.info.status == OUTCOMES[lr][1], (lr, run.info.status)
        assert run.data.tags["trainlab.kind"] == "trial"
        assert run.data.tags["trainlab.study"] == "outcomes"
        assert run.data.tags["trainlab.trial"] == str(trial.number)
        assert float(run.data.params["optimizer.init_args.lr"]) == lr
    pruned = children[by_lr[1e-6].user_attrs["mlflow_run_id"]]
    assert pruned.data.tags["trainlab.pruned"] == "true"
    failed = children[by_lr[1e6].user_attrs["mlflow_run_id"]]
    assert re.search(r"nan|non-finite", failed.data.tags["trainlab.status_reason"], re.I)
    complete = by_lr[0.1]
    curve = mlflow_client.get_metric_history(complete.user_attrs["mlflow_run_id"], "val/acc")
    assert sorted(m.step for m in curve) == [0, 1]
    assert complete.value == pytest.approx(max(m.value for m in curve))

    # Progress: a line per trial with its state, and the best so far once one completed.
    assert len(re.findall(r"^\[\s*\d+/3\] trial \d", result.out, re.M)) == 3
    assert re.search(rf"COMPLETE val/acc={complete.value:.4f}\s+best {complete.value:.4f} \(trial {complete.number}\)", result.out)

    # The parent's report: best value and run, trials table, runnable best config, offline plots.
    assert parent.data.metrics["best/val/acc"] == pytest.approx(complete.value)
    assert parent.data.metrics["study/trials_pruned"] == 1 and parent.data.metrics["study/trials_failed"] == 1
    assert parent.data.tags["trainlab.study.best_run_id"] == complete.user_attrs["mlflow_run_id"]
    folder = workdir / "parent"
    mlflow_client.download_artifacts(parent.info.run_id, "", str(folder))
    with (folder / "trials.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert sorted(row["state"] for row in table) == ["COMPLETE", "FAIL", "PRUNED"]
    assert {row["mlflow_run_id"] for row in table} == set(children)
    from trainlab.config import resolve_run_config

    best_config = resolve_run_config(yaml.safe_load((folder / "best_config.yaml").read_text()))
    assert best_config.document["optimizer"]["init_args"]["lr"] == 0.1
    page = (folder / "plots" / "study.html").read_text()
    assert "optimization history" in page and "Plotly.newPlot" in page
    assert not re.search(r"<script[^>]+src=[\"']?https?:", page), "plots must not load scripts from a CDN"
    for name in ("optimization_history", "intermediate_values", "slice"):
        assert (folder / "plots" / f"{name}.png").stat().st_size > 1000

    # Same command again: nothing left to run, nothing duplicated; --refit-best trains the best config once more.
    again = cli("study", path, "--refit-best")
    assert again.code == 0, again
    assert len(_load_study(workdir, "outcomes").trials) == 3
    runs = all_runs(tracking_uri)
    assert [r.info.run_id for r in runs if r.data.tags.get("trainlab.kind") == "study"] == [parent.info.run_id]
    assert mlflow_client.get_run(parent.info.run_id).info.status == "FINISHED"
    refits = [r for r in runs if r.data.tags.get("trainlab.kind") == "refit"]
    assert len(refits) == 1
    refit = refits[0]
    assert refit.info.status == "FINISHED" and refit.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert refit.data.params["data.init_args.val_fraction"] == "0.0"
    assert "test/acc" in refit.data.metrics
    import mlflow.pytorch
    import torch

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pytorch.load_model(f"runs:/{refit.info.run_id}/model")
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    # Issue 19: pt2 where torch.export traces the module, else pickle with the reason on the run.
    form = refit.data.tags["trainlab.model_format"]
    assert form == "pt2" or form.startswith("pickle: torch.export could not trace the module ("), form


@pytest.mark.integration
def test_four_workers_share_the_default_storage(workdir, cli, tracking_uri):
    path = _tiny_study(
        workdir,
        {"name": "parallel", "metric": "val/acc", "direction": "maximize", "n_trials": 5, "sampler": {"type": "random", "seed": 1},
         "pruner": {"type": "median", "n_startup_trials": 2}},
        {"optimizer.init_args.lr": {"low": 1e-3, "high": 0.3, "log": True}, "model.init_args.dropout": {"low": 0.0, "high": 0.3}},
        # Long enough that a worker process (several seconds to start) still finds trials to claim: trials no
        # longer pay for a test pass and pictures, and one-epoch trials all ended in the first worker.
        trainer={"max_epochs": 6, "enable_progress_bar": False},
    )
    result = cli("study", path, "--jobs", "4")
    assert result.code == 0, result
    assert "locked" not in result.out + result.err and "Traceback" not in result.err, result.err[-3000:]

    study = _load_study(workdir, "parallel")
    states = [t.state.name for t in study.trials]
    assert "RUNNING" not in states and "WAITING" not in states
    assert states.count("COMPLETE") + states.count("PRUNED") == 5, states
    assert all(t.user_attrs.get("trainlab.fail_reason") for t in study.trials if t.state.name == "FAIL")
    assert len({t.user_attrs["trainlab.worker"]["pid"] for t in study.trials}) > 1, "trials ran in several workers"
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == len(study.trials), "workers drew distinct values"

    runs = all_runs(tracking_uri)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    children = {r.info.run_id: r for r in runs if r.data.tags.get("trainlab.kind") == "trial"}
    assert sorted(children) == sorted(t.user_attrs["mlflow_run_id"] for t in study.trials)
    expected = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
    for trial in study.trials:
        assert children[trial.user_attrs["mlflow_run_id"]].info.status == expected[trial.state.name]
    assert len(re.findall(r"^\[\s*\d+/5\] trial \d", result.out, re.M)) == len(study.trials)
    assert all(math.isfinite(t.value) for t in study.trials if t.state.name == "COMPLETE")


@pytest.mark.integration
def test_a_metric_the_model_never_logs_stops_the_study_with_one_line(workdir, cli):
    path = _tiny_study(
        workdir,
        {"name": "typo", "metric": "val/accuracy", "direction": "maximize", "n_trials": 3},
        {"model.init_args.dropout": {"low": 0.0, "high": 0.3}},
        trainer={"max_epochs": 1, "enable_progress_bar": False},
    )
    result = cli("study", path)
    assert result.code == 2, result
    error = [line for line in result.err.splitlines() if line.startswith("trainlab: error:")]
    assert error == [error[0]] and "study.metric: got 'val/accuracy'; expected a metric the model logs each epoch" in error[0]
    assert "val/acc" in error[0]
    assert [t.state.name for t in _load_study(workdir, "typo").trials] == ["FAIL"], "the study stops at its first trial"



@pytest.mark.integration
def test_a_failed_trial_is_retried_with_the_same_values(workdir, cli):
    path = _tiny_study(
        workdir,
        {"name": "retry", "metric": "val/acc", "direction": "maximize", "n_trials": 1, "sampler": "grid", "retry_failed": 1},
        {"optimizer.init_args.lr": {"choices": [1.0e6]}},  # diverges: every attempt fails
    )
    result = cli("study", path)
    assert result.code == 1 and "no trial completed" in result.err, result
    first, retry = _load_study(workdir, "retry").trials
    assert first.state.name == retry.state.name == "FAIL"
    assert retry.params == first.params
    assert retry.user_attrs["trainlab.retry_of"] == first.number and retry.user_attrs["trainlab.retry"] == 1
