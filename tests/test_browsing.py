"""What a user reads while browsing a study, checked on real stores without training: the study report
on a real MLflow SQLite store and a real Optuna journal (trial outcomes in run names and tags, the best
trial marked with its tie rule, links both ways, one name per hyperparameter, the dashboard's importance
numbers), `trainlab runs`, MLflow's context tags and dataset inputs, searchable numeric params, and the
README's plain-Optuna snippet."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

DOCUMENT = {
    "seed_everything": 42,
    "model": {"class_path": "MLPClassifier", "init_args": {"hidden_sizes": [64]}},
    "data": {"class_path": "Digits"},
    "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}},
    "trainer": {"max_epochs": 3, "enable_progress_bar": False},
    "tracking": {"experiment": "browsing"},
    "study": {"name": "marks", "metric": "val/acc", "direction": "maximize", "n_trials": 6},
    "search_space": {
        "model.init_args.dropout": {"low": 0.0, "high": 0.5},
        "optimizer.class_path": {
            "choices": {
                "torch.optim.SGD": {"optimizer.init_args.lr": {"low": 1.0e-3, "high": 0.3, "log": True}},
                "torch.optim.Adam": {"optimizer.init_args.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}},
            }
        },
    },
}


def _study_with_runs(workdir, tracking_uri):
    """A study in a journal file with a parent run, and trials whose runs ended as fit_run ends them."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    from trainlab.config.experiment import Experiment
    from trainlab.studies.loading import open_study, split_experiment
    from trainlab.studies.parent_run import ensure_parent_run
    from trainlab.studies.spec import load_study_spec
    from trainlab.tracking.run_record import RunRecord

    experiment: Experiment = split_experiment(DOCUMENT)
    spec = load_study_spec(experiment, check_run=False)
    storage_url = str(workdir / "optuna_journal.log")
    study, _ = open_study(storage_url, spec, experiment)
    parent_id = ensure_parent_run(study, spec, experiment, tracking_uri, storage_url)

    def add(number: int, state: TrialState, value: float | None, optimizer: str, lr: float, reason: str | None = None):
        label = optimizer.rsplit(".", 1)[-1]
        record = RunRecord.create(tracking_uri, "browsing", f"marks-trial-{number}", {"trainlab.kind": "trial", "trainlab.study": "marks", "trainlab.trial": str(number)}, parent_run_id=parent_id)
        record.log_metrics({"val/acc": value if value is not None else 0.1}, step=0)
        if state == TrialState.PRUNED:
            record.set_tags({"trainlab.pruned": "true"})
        record.end({TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.FAIL: "FAILED"}[state], reason)
        study.add_trial(
            create_trial(
                state=state,
                value=value,
                params={"model.init_args.dropout": 0.1 * number, "optimizer.class_path": optimizer, f"optimizer.init_args.lr@{label}": lr},
                distributions={
                    "model.init_args.dropout": FloatDistribution(0.0, 0.5),
                    "optimizer.class_path": CategoricalDistribution(["torch.optim.SGD", "torch.optim.Adam"]),
                    f"optimizer.init_args.lr@{label}": FloatDistribution(1e-4, 0.3, log=True),
                },
                intermediate_values={0: 0.1, 1: 0.12} if state == TrialState.PRUNED else ({0: value} if value is not None else {}),
                user_attrs={"mlflow_run_id": record.run_id, **({"trainlab.fail_reason": reason} if reason else {})},
            )
        )
        return record.run_id

    runs = {
        0: add(0, TrialState.COMPLETE, 0.90, "torch.optim.SGD", 0.05),
        1: add(1, TrialState.COMPLETE, 0.95, "torch.optim.Adam", 0.001),
        2: add(2, TrialState.PRUNED, None, "torch.optim.SGD", 0.002),
        3: add(3, TrialState.FAIL, None, "torch.optim.SGD", 0.3, reason="FloatingPointError: train/loss became nan at epoch 1"),
        4: add(4, TrialState.COMPLETE, 0.95, "torch.optim.Adam", 0.003),  # ties with trial 1: the earlier one wins
    }
    return optuna.load_study(study_name="marks", storage=study._storage), spec, parent_id, runs


@pytest.mark.integration
def test_the_report_marks_outcomes_links_both_ways_and_the_earliest_of_tied_trials_is_best(workdir, tracking_uri, mlflow_client, cli):
    from optuna_dashboard._inmemory_cache import InMemoryCache
    from optuna_dashboard._importance import get_param_importance_from_trials_cache
    from optuna_dashboard._note import get_note_from_system_attrs

    from trainlab.studies.report import write_study_report

    study, spec, parent_id, runs = _study_with_runs(workdir, tracking_uri)
    summary = write_study_report(study, spec, tracking_uri, parent_id)

    assert (summary.best_number, summary.best_run_id) == (1, runs[1])
    assert set(summary.best_params) == {"model.init_args.dropout", "optimizer.class_path", "optimizer.init_args.lr"}
    experiment = mlflow_client.get_experiment_by_name("browsing")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    got = {number: mlflow_client.get_run(run_id) for number, run_id in runs.items()}
    assert {n: r.info.run_name for n, r in got.items()} == {
        0: "marks-trial-0", 1: "[best] marks-trial-1", 2: "[pruned] marks-trial-2", 3: "[failed] marks-trial-3", 4: "marks-trial-4",
    }
    assert {n: r.data.tags["trainlab.outcome"] for n, r in got.items()} == {0: "complete", 1: "complete", 2: "pruned", 3: "failed", 4: "complete"}
    assert [n for n, r in got.items() if r.data.tags.get("trainlab.best") == "true"] == [1]
    parent_url = f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs/{parent_id}"
    dashboard_url = f"http://127.0.0.1:8080/dashboard/studies/{study._study_id}"
    assert f"[parent run]({parent_url})" in got[2].data.tags["mlflow.note.content"]
    assert "Pruned by Optuna at epoch 1" in got[2].data.tags["mlflow.note.content"]
    assert "train/loss became nan" in got[3].data.tags["mlflow.note.content"]
    assert "**Best trial of the study**" in got[1].data.tags["mlflow.note.content"]

    parent = mlflow_client.get_run(parent_id)
    description = parent.data.tags["mlflow.note.content"]
    best_url = f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs/{runs[1]}"
    assert f"**Best: [trial 1]({best_url})**" in description and "the earliest wins" in description
    assert f"({dashboard_url})" in description
    for tag in ("mlflow.user", "mlflow.source.name", "mlflow.source.type"):
        assert parent.data.tags.get(tag), tag

    # optuna-dashboard: the metric's name, and each trial's note links its MLflow run.
    assert study.metric_names == ["val/acc"]
    attrs = study._storage.get_study_system_attrs(study._study_id)
    for trial in study.trials:
        run_id = trial.user_attrs["mlflow_run_id"]
        assert f"(http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs/{run_id})" in get_note_from_system_attrs(attrs, trial._trial_id)["body"]
    assert parent_url in get_note_from_system_attrs(attrs, None)["body"]

    # trials.csv: one column per hyperparameter, whichever optimizer branch a trial took.
    folder = workdir / "parent"
    mlflow_client.download_artifacts(parent_id, "", str(folder))
    with (folder / "trials.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert not [column for column in table[0] if "@" in column]
    assert [float(row["optimizer.init_args.lr"]) for row in table] == [0.05, 0.001, 0.002, 0.3, 0.003]

    # Importances: the dashboard's own function gives the numbers the parent run shows, evaluator named.
    shown = json.loads((folder / "plots" / "param_importances.json").read_text())
    assert shown["evaluator"] == "PedAnovaImportanceEvaluator"
    dashboard = get_param_importance_from_trials_cache(InMemoryCache(), study._storage, study._study_id, 0, study.get_trials(deepcopy=False))
    assert len(dashboard) == 4
    assert {row["name"]: round(row["importance"], 9) for row in dashboard} == {k: round(v, 9) for k, v in shown["importances"].items()}
    assert "PedAnovaImportanceEvaluator" in (folder / "plots" / "study.html").read_text()

    # A resumed study with a better trial moves the best mark; the old best keeps a plain name.
    import optuna

    better = optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE, value=0.97, params={"model.init_args.dropout": 0.2},
        distributions={"model.init_args.dropout": optuna.distributions.FloatDistribution(0.0, 0.5)},
        user_attrs={"mlflow_run_id": runs[0]},
    )
    study.add_trial(better)
    write_study_report(study, spec, tracking_uri, parent_id)
    assert mlflow_client.get_run(runs[1]).info.run_name == "marks-trial-1"
    assert "trainlab.best" not in mlflow_client.get_run(runs[1]).data.tags
    assert mlflow_client.get_run(runs[0]).data.tags["trainlab.best"] == "true"

    # trainlab runs: the study metric per run, and PRUNED apart from FAILED.
    result = cli("runs", "--tracking-uri", tracking_uri)
    assert result.code == 0, result
    lines = {line.split()[0]: line for line in result.out.splitlines()[1:]}
    assert "PRUNED" in lines[runs[2]] and "FAILED" in lines[runs[3]]
    assert "val/acc=0.9500" in lines[runs[4]]
    assert "study metric" in result.out.splitlines()[0]


def test_numeric_params_are_searchable_as_metrics(tracking_uri, mlflow_client):
    from trainlab.tracking.context import numeric_param_metrics
    from trainlab.tracking.run_record import RunRecord, flatten

    params = flatten({"optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.05, "nesterov": True}}, "data": {"init_args": {"batch_size": 64}}})
    metrics = numeric_param_metrics(params)
    assert metrics == {"param/optimizer.init_args.lr": 0.05, "param/data.init_args.batch_size": 64.0}
    record = RunRecord.create(tracking_uri, "searchable", "lr-0.05", {})
    record.log_params(params)
    record.log_metrics(metrics, step=0)
    record.end("FINISHED")
    experiment_id = mlflow_client.get_experiment_by_name("searchable").experiment_id
    assert [r.info.run_id for r in mlflow_client.search_runs([experiment_id], "metrics.`param/optimizer.init_args.lr` > 0.01")] == [record.run_id]
    assert mlflow_client.search_runs([experiment_id], "metrics.`param/optimizer.init_args.lr` > 0.1") == []


def test_the_datamodule_is_logged_as_an_mlflow_dataset_input(tracking_uri, mlflow_client):
    from trainlab.datamodules import Digits
    from trainlab.tracking.context import log_dataset_input
    from trainlab.tracking.run_record import RunRecord

    datamodule = Digits()
    fingerprint = datamodule.fingerprint()
    record = RunRecord.create(tracking_uri, "datasets", "digits", {})
    log_dataset_input(record.client, record.run_id, "Digits", fingerprint, source="trainlab.datamodules.Digits")
    inputs = mlflow_client.get_run(record.run_id).inputs.dataset_inputs
    shown = {i.tags[0].value: (i.dataset.name, i.dataset.digest) for i in inputs}
    assert shown == {"training": ("Digits", fingerprint["train"]["sha256"][:10]), "validation": ("Digits", fingerprint["val"]["sha256"][:10]),
                     "test": ("Digits", fingerprint["test"]["sha256"][:10])}


def test_the_readme_opens_a_study_with_plain_optuna(workdir):
    """The README's snippet, as written, reads a study trainlab stored in its journal file."""
    import optuna
    from optuna.distributions import FloatDistribution

    from trainlab.studies.storage import open_storage

    readme = (REPO / "README.md").read_text()
    section = readme.split("## Open a study with plain Optuna", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    study = optuna.create_study(study_name="digits-mlp", storage=open_storage(str(workdir / "optuna_journal.log")), direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.9, params={"model.init_args.dropout": 0.1}, distributions={"model.init_args.dropout": FloatDistribution(0, 0.5)}))
    result = subprocess.run([sys.executable, "-c", snippet], cwd=workdir, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "digits-mlp" in result.stdout and "'model.init_args.dropout': 0.1" in result.stdout
