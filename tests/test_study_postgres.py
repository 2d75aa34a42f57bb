"""The scale-out storage: a study in the local PostgreSQL, two workers sharing it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
import yaml

from conftest import all_runs, need, postgres_admin, postgres_available

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.mark.postgres
@pytest.mark.integration
def test_study_on_postgresql_storage(workdir, cli, tracking_uri):
    need(postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    import optuna

    name = f"trainlab-test-{uuid.uuid4().hex[:10]}"
    document = {
        "model": {"class_path": "MLPClassifier", "init_args": {"hidden_sizes": [32]}},
        "data": {"class_path": "Digits"},
        "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.005}},
        "trainer": {"max_epochs": 1, "enable_progress_bar": False},
        "tracking": {"experiment": "postgres-test"},
        "study": {"metric": "val/acc", "direction": "maximize", "n_trials": 3, "sampler": {"type": "random", "seed": 0}},
        "search_space": {"model.init_args.dropout": {"low": 0.0, "high": 0.3}},
    }
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    try:
        result = cli("study", path, "--storage", POSTGRES_URL, "--study-name", name, "--jobs", "2")
        assert result.code == 0, result
        study = optuna.load_study(study_name=name, storage=POSTGRES_URL)
        states = [t.state.name for t in study.trials]
        assert states.count("COMPLETE") + states.count("PRUNED") == 3 and "RUNNING" not in states, states
        assert not (workdir / "optuna_journal.log").exists(), "an explicit --storage replaces the default journal"
        parent = next(r for r in all_runs(tracking_uri) if r.data.tags.get("trainlab.kind") == "study")
        assert parent.data.tags["trainlab.study.storage"] == POSTGRES_URL
        trial_runs = {r.info.run_id for r in all_runs(tracking_uri) if r.data.tags.get("trainlab.study") == name and r.data.tags.get("trainlab.kind") == "trial"}
        assert trial_runs == {t.user_attrs["mlflow_run_id"] for t in study.trials}
    finally:
        if name in optuna.get_all_study_names(storage=POSTGRES_URL):
            optuna.delete_study(study_name=name, storage=POSTGRES_URL)


@pytest.mark.postgres
@pytest.mark.integration
def test_two_invocations_of_one_study_that_end_together_both_report_and_finish_it(workdir, fast_digits):
    """Two terminals run `trainlab study` on one study (PostgreSQL storage and tracking); each trains one of its
    two trials and both reach the study's end at the same moment. One at a time reports: both exit 0, the
    parent run ends FINISHED once, every trial run is marked once and the best trial is tested once."""
    need(postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    import optuna
    from mlflow.tracking import MlflowClient

    from trainlab.studies.best_test import TESTED_AT_STUDY_END

    suffix = uuid.uuid4().hex[:8]
    mlflow_db, optuna_db, name = f"tl_mlflow_{suffix}", f"tl_optuna_{suffix}", f"together-{suffix}"
    storage, tracking = (f"postgresql://postgres@127.0.0.1:5432/{db}" for db in (optuna_db, mlflow_db))
    document = yaml.safe_load(fast_digits.read_text())
    document["trainer"]["max_epochs"] = 15  # a trial outlasts the other terminal's start-up: each one trains a trial
    document["study"] = {"metric": "val/acc", "direction": "maximize", "n_trials": 2, "sampler": {"type": "random", "seed": 0}, "pruner": {"type": "none"}}
    document["search_space"] = {"optimizer.init_args.lr": {"low": 1.0e-3, "high": 1.0e-2, "log": True}}
    (workdir / "study.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    for database in (mlflow_db, optuna_db):
        postgres_admin(f"CREATE DATABASE {database}")
    # Stores in use already (schemas made): two first uses of an empty MLflow database race on its CREATE TABLEs.
    MlflowClient(tracking_uri=tracking).search_experiments()
    optuna.storages.RDBStorage(storage)
    command = [sys.executable, "-m", "trainlab", "study", "study.yaml", "--storage", storage, "--tracking-uri", tracking, "--study-name", name]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    terminals = [subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    try:
        outputs = [terminal.communicate(timeout=600)[0] for terminal in terminals]
        assert [terminal.returncode for terminal in terminals] == [0, 0], "\n\n".join(o[-3000:] for o in outputs)

        study = optuna.load_study(study_name=name, storage=storage)
        assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
        client = MlflowClient(tracking_uri=tracking)
        runs = client.search_runs([client.get_experiment_by_name(document["tracking"]["experiment"]).experiment_id])
        (parent,) = [r for r in runs if r.data.tags.get("trainlab.kind") == "study"]
        assert parent.info.status == "FINISHED" and "trainlab.status_reason" not in parent.data.tags
        trial_runs = {r.info.run_id: r for r in runs if r.data.tags.get("trainlab.kind") == "trial"}
        assert set(trial_runs) == {t.user_attrs["mlflow_run_id"] for t in study.trials}
        best_run = study.best_trial.user_attrs["mlflow_run_id"]
        for run_id, run in trial_runs.items():
            assert run.info.status == "FINISHED" and run.data.tags["trainlab.outcome"] == "complete"
            best = run_id == best_run
            assert run.info.run_name.count("[best] ") == int(best) and run.data.tags.get("trainlab.best") == ("true" if best else None)
            assert run.data.tags["mlflow.note.content"].count("Trial ") == 1, run.data.tags["mlflow.note.content"]
        assert trial_runs[best_run].data.tags["trainlab.test"] == TESTED_AT_STUDY_END
        assert len(client.get_metric_history(best_run, "test/acc")) == 1, "the best trial is tested once, by one invocation"
        assert all("best trial 0 tested" in o or "best trial 1 tested" in o for o in outputs), "the other one reads the result"
    finally:
        for terminal in terminals:
            if terminal.poll() is None:
                terminal.kill()
        for database in (mlflow_db, optuna_db):
            postgres_admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
