"""Reproducing study runs: a trial (a child run of the study's parent) and, by `study:NAME`, the study's best trial.

The study layout is made here directly with the training path (parent run + trials as child runs), the
same MLflow layout `trainlab study` writes, so these tests do not depend on the study command.
"""

from __future__ import annotations

import pytest

from conftest import all_runs

pytestmark = pytest.mark.integration

STUDY = "digits-search"


def make_study(tracking_uri: str, experiment_file, name: str = STUDY, lrs=(0.0003, 0.01), epochs: int = 2):
    """A finished study parent run with one trial per learning rate (none: a study without trials);
    returns (parent id, trial run ids)."""
    from trainlab.config import load_experiment, resolve_run_config
    from trainlab.tracking.run_record import RunRecord
    from trainlab.training import fit_run

    parent = RunRecord.create(
        tracking_uri,
        experiment="digits-mlp",
        run_name=name,
        tags={
            "trainlab.kind": "study",
            "trainlab.study": name,
            "trainlab.study.metric": "val/acc",
            "trainlab.study.direction": "maximize",
            "trainlab.study.storage": "sqlite:///optuna.db",
        },
    )
    trial_ids = []
    for number, lr in enumerate(lrs):
        overrides = [f"optimizer.init_args.lr={lr}", f"trainer.max_epochs={epochs}", f"tracking.run_name=trial-{number}"]
        if number == 0:  # a study may also leave its tags in the config's tracking section
            overrides.append(f"tracking.tags={{trainlab.study: {name}}}")
        config = resolve_run_config(load_experiment(experiment_file, overrides).run)
        tags = {"trainlab.kind": "trial", "trainlab.study": name, "trainlab.trial": str(number)}
        trial_ids.append(fit_run(config, tracking_uri, parent_run_id=parent.run_id, tags=tags).run_id)
    parent.end("FINISHED")
    return parent.run_id, trial_ids


def test_a_trial_and_the_best_trial_of_a_study_reproduce(cli, fast_digits, tracking_uri, mlflow_client):
    parent_id, trial_ids = make_study(tracking_uri, fast_digits)
    # A trial's value is its best epoch, as the study's objective.
    values = {run_id: max(m.value for m in mlflow_client.get_metric_history(run_id, "val/acc")) for run_id in trial_ids}
    assert len(set(values.values())) == 2, values  # learning rates far apart: no tie for the best
    best = max(values, key=values.get)
    other = next(run_id for run_id in trial_ids if run_id != best)

    trial = cli("reproduce", other)
    assert trial.code == 0, trial
    assert f"reproduce run {other} (trial-" in trial.out and "MATCH: all" in trial.out

    best_run = cli("reproduce", f"study:{STUDY}")
    assert best_run.code == 0, best_run
    assert f"reproduce run {best}" in best_run.out and "MATCH: all" in best_run.out

    runs = all_runs(tracking_uri)
    reproductions = [r for r in runs if "trainlab.reproduces" in r.data.tags]
    assert sorted(r.data.tags["trainlab.reproduces"] for r in reproductions) == sorted([other, best])
    for run in reproductions:
        # A reproduction is not one more trial of the study: no parent, no study tags.
        assert "mlflow.parentRunId" not in run.data.tags
        assert "trainlab.study" not in run.data.tags and run.data.tags["trainlab.kind"] == "reproduction"
    trials = [r for r in runs if r.data.tags.get("trainlab.kind") == "trial"]
    assert sorted(r.info.run_id for r in trials) == sorted(trial_ids)
    assert all(r.data.tags["mlflow.parentRunId"] == parent_id for r in trials)


def test_unknown_study_gives_exit_2(cli, fast_digits, tracking_uri):
    make_study(tracking_uri, fast_digits, lrs=())
    result = cli("reproduce", "study:nope")
    assert result.code == 2 and "nope" in result.err and STUDY in result.err and result.err.count("\n") == 1
