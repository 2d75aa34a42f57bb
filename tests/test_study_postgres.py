"""The scale-out storage: a study in the local PostgreSQL, two workers sharing it."""

from __future__ import annotations

import uuid

import pytest
import yaml

from conftest import all_runs, need, postgres_available

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
