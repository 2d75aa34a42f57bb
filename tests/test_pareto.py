"""Multi-objective and constrained studies: accuracy against size and speed, with a Pareto front.

A real 3-objective study on digits with a constraint: its front on the parent run equals a brute-force
computation over what the trial runs logged, infeasible trials stay off it, the Pareto trials are tagged,
the front's plot is in MLflow, and ``--pick`` chooses the trial the rule says (refit, reproduce). Bad input
is one line, exit 2, nothing created.
"""

from __future__ import annotations

import csv
import json
import math

import pytest
import yaml

from conftest import all_runs

METRICS = {"val/acc": "maximize", "model/params": "minimize", "model/latency_ms": "minimize"}
PARAMS_BOUND = 3000  # hidden [8]: 610 and [32]: 2410 parameters are feasible; [64]: 4810 and [128]: 9610 are not
PICK = f"max val/acc where model/params <= {PARAMS_BOUND}"


def _study_file(workdir, study: dict | None = None, **run_changes) -> str:
    document = {
        "seed_everything": 42,
        "model": {"class_path": "MLPClassifier", "init_args": {"hidden_sizes": [32], "dropout": 0.0}},
        "data": {"class_path": "Digits", "init_args": {"batch_size": 64, "val_fraction": 0.15}},
        "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
        "trainer": {"max_epochs": 2, "enable_progress_bar": False},
        "tracking": {"experiment": "pareto-test"},
        "study": study
        or {
            "name": "front",
            "metrics": METRICS,
            "constraints": {"model/params": f"<= {PARAMS_BOUND}"},
            "n_trials": 6,
            "sampler": {"type": "tpe", "seed": 3, "n_startup_trials": 6},
        },
        "search_space": {
            "model.init_args.hidden_sizes": {"choices": [[8], [32], [64], [128]]},
            "model.init_args.dropout": {"low": 0.0, "high": 0.3},
        },
        **run_changes,
    }
    path = workdir / "pareto.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return str(path)


def _dominates(a: dict, b: dict) -> bool:
    """a is at least as good as b on every objective and better on one."""
    better_or_equal = all(a[m] >= b[m] if d == "maximize" else a[m] <= b[m] for m, d in METRICS.items())
    strictly = any(a[m] > b[m] if d == "maximize" else a[m] < b[m] for m, d in METRICS.items())
    return better_or_equal and strictly


def _logged_values(client, run) -> dict:
    """What a trial run logged, read back from MLflow: val/acc at its best epoch, the measures once."""
    history = client.get_metric_history(run.info.run_id, "val/acc")
    return {
        "val/acc": max(m.value for m in history),
        "model/params": run.data.metrics["model/params"],
        "model/latency_ms": run.data.metrics["model/latency_ms"],
    }


@pytest.mark.integration
def test_three_objective_study_with_a_constraint_has_the_brute_force_front(workdir, cli, tracking_uri, mlflow_client):
    import optuna

    from trainlab.studies.storage import open_storage

    result = cli("study", _study_file(workdir), "--refit-best", "--pick", PICK)
    assert result.code == 0, result
    assert "Pareto front:" in result.out

    runs = all_runs(tracking_uri)
    parent = next(r for r in runs if r.data.tags.get("trainlab.kind") == "study")
    trials = [r for r in runs if r.data.tags.get("trainlab.kind") == "trial"]
    assert len(trials) == 6 and all(r.info.status == "FINISHED" for r in trials)
    values = {int(r.data.tags["trainlab.trial"]): _logged_values(mlflow_client, r) for r in trials}
    feasible = {n for n, v in values.items() if v["model/params"] <= PARAMS_BOUND}
    assert feasible and feasible != set(values), "the seed must give feasible and infeasible trials, or the check means nothing"
    front = {n for n in feasible if not any(_dominates(values[o], values[n]) for o in feasible if o != n)}

    # the parent run: tag, count, pareto.csv; the trial runs: tags and names
    assert parent.data.tags["trainlab.study.pareto_trials"] == ",".join(map(str, sorted(front)))
    assert parent.data.metrics["study/pareto_trials"] == len(front)
    assert json.loads(parent.data.tags["trainlab.study.metrics"]) == METRICS
    tagged = {int(r.data.tags["trainlab.trial"]) for r in trials if r.data.tags.get("trainlab.pareto") == "true"}
    assert tagged == front
    assert all(r.info.run_name.startswith("[pareto] ") == (int(r.data.tags["trainlab.trial"]) in front) for r in trials)
    downloads = workdir / "downloads"
    downloads.mkdir()
    with open(mlflow_client.download_artifacts(parent.info.run_id, "pareto.csv", str(downloads))) as handle:
        table = list(csv.DictReader(handle))
    assert {int(row["number"]) for row in table} == front
    for row in table:
        assert all(math.isclose(float(row[m]), values[int(row["number"])][m], rel_tol=1e-9) for m in METRICS)

    # the plots: the front as self-contained HTML (no script fetched from anywhere) and as PNG
    plots = {a.path for a in mlflow_client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/pareto_front.html", "plots/pareto_front.png", "plots/study.html"} <= plots
    with open(mlflow_client.download_artifacts(parent.info.run_id, "plots/pareto_front.html", str(downloads))) as handle:
        page = handle.read()
    assert "<script src=" not in page and "plotly" in page.lower()

    # Optuna: the same values and feasibility; objective names for optuna-dashboard
    study = optuna.load_study(study_name="front", storage=open_storage(str(workdir / "optuna_journal.log")))
    assert study.metric_names == list(METRICS)
    for trial in study.trials:
        assert [round(v, 9) for v in trial.values] == [round(values[trial.number][m], 9) for m in METRICS]
        assert (trial.constraints["model/params"] <= 0) == (trial.number in feasible)

    # --pick: the highest val/acc among Pareto trials within the bound, the earliest on a tie
    expected = min(front, key=lambda n: (-values[n]["val/acc"], n))
    refit = next(r for r in runs if r.data.tags.get("trainlab.kind") == "refit")
    assert refit.data.tags["trainlab.trial"] == str(expected) and refit.data.tags["trainlab.pick"] == PICK
    expected_run = next(r.info.run_id for r in trials if r.data.tags["trainlab.trial"] == str(expected))
    reproduced = cli("reproduce", "study:front", "--pick", PICK)
    assert f"reproduce run {expected_run}" in reproduced.out, reproduced
    assert reproduced.code == 0 and "MATCH" in reproduced.out and "MISMATCH" not in reproduced.out, reproduced  # the latency differs; it is a timing, not a mismatch
    confirmed = cli("confirm", "front", "--pick", PICK, "--top-k", "1", "--seeds", "2")
    assert confirmed.code == 0 and f"trial {expected} (study rank 1) seed" in confirmed.out, confirmed

    # several objectives and no rule: one line, exit 2
    refused = cli("confirm", "front", "--seeds", "2")
    assert refused.code == 2 and refused.err.startswith("trainlab: error: --pick") and len(refused.err.strip().splitlines()) == 1
    nobody = cli("reproduce", "study:front", "--pick", "max val/acc where model/params <= 1", "--dry-run")
    assert nobody.code == 2 and "Pareto trial" in nobody.err, nobody


def _bad(**study_changes) -> dict:
    study = {"name": "bad", "metrics": dict(METRICS), "constraints": {"model/params": "<= 3000"}, "n_trials": 2, "sampler": "tpe"}
    study.update(study_changes)
    return {key: value for key, value in study.items() if value is not None}


BAD = [
    ("unknown-direction", _bad(metrics={"val/acc": "upward", "model/params": "minimize"}), [], "study.metrics.val/acc: got 'upward'"),
    ("metric-and-metrics", _bad(metric="val/acc"), [], "study.metrics"),
    ("unparsable-constraint", _bad(constraints={"model/params": "< 5k"}), [], "study.constraints.model/params: got '< 5k'"),
    ("constraint-on-unknown-measure", _bad(constraints={"model/flops": "<= 10"}), [], "study.constraints: got 'model/flops'"),
    ("constraint-on-test-metric", _bad(constraints={"test/acc": ">= 0.9"}), [], "study.constraints: got 'test/acc'"),
    ("pruning-several-objectives", _bad(pruner="median"), [], "study.pruner: got 'median'"),
    ("sampler-ignores-constraints", _bad(sampler="random"), [], "study.sampler: got 'random'"),
    ("cmaes-several-objectives", _bad(sampler="cmaes", constraints=None), [], "study.sampler: got 'cmaes'"),
    ("measure-first", _bad(metrics={"model/params": "minimize", "val/acc": "maximize"}), [], "study.metrics: got 'model/params'"),
    ("refit-without-pick", _bad(), ["--refit-best"], "--pick: expected a rule"),
    ("pick-unparsable", _bad(), ["--refit-best", "--pick", "best val/acc"], "--pick: got 'best val/acc'"),
    ("pick-unknown-metric", _bad(), ["--refit-best", "--pick", "max val/loss"], "not val/loss"),
    ("pick-bad-condition", _bad(), ["--refit-best", "--pick", "max val/acc where params is small"], "conditions such as"),
]


@pytest.mark.parametrize("study, extra, fragment", [pytest.param(s, e, f, id=i) for i, s, e, f in BAD])
def test_bad_multi_objective_input_is_one_line_and_creates_nothing(workdir, cli, study, extra, fragment):
    result = cli("study", _study_file(workdir, study), *extra)
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trainlab: error: "), result
    assert fragment in lines[0], result
    assert not (workdir / "mlflow.db").exists() and not (workdir / "optuna_journal.log").exists() and not (workdir / "mlruns").exists()


def test_a_run_refuses_an_unknown_measure(workdir, cli):
    result = cli("train", _study_file(workdir), "measure=[model/flops]")
    assert result.code == 2 and "measure: got ['model/flops']" in result.err, result
    assert not (workdir / "mlflow.db").exists()


@pytest.mark.integration
def test_a_multi_objective_study_runs_on_two_workers_and_resumes(workdir, cli, tracking_uri, mlflow_client):
    study = {
        "name": "front-jobs",
        "metrics": {"val/acc": "maximize", "model/params": "minimize"},
        "n_trials": 3,
        "sampler": {"type": "nsga2", "seed": 5, "population_size": 4},
    }
    path = _study_file(workdir, study, trainer={"max_epochs": 1, "enable_progress_bar": False})
    first = cli("study", path, "--jobs", "2")
    assert first.code == 0, first
    resumed = cli("study", path, "--n-trials", "5")
    assert resumed.code == 0, resumed

    runs = all_runs(tracking_uri)
    parents = [r for r in runs if r.data.tags.get("trainlab.kind") == "study"]
    trials = [r for r in runs if r.data.tags.get("trainlab.kind") == "trial"]
    assert len(parents) == 1 and len(trials) == 5 and all(r.info.status == "FINISHED" for r in trials)
    values = {}
    for run in trials:
        history = mlflow_client.get_metric_history(run.info.run_id, "val/acc")
        values[int(run.data.tags["trainlab.trial"])] = {"val/acc": max(m.value for m in history), "model/params": run.data.metrics["model/params"]}
    assert sorted(values) == [0, 1, 2, 3, 4]

    def dominates(a, b):
        return a["val/acc"] >= b["val/acc"] and a["model/params"] <= b["model/params"] and a != b

    front = {n for n in values if not any(dominates(values[o], values[n]) for o in values if o != n)}
    tagged = {int(r.data.tags["trainlab.trial"]) for r in trials if r.data.tags.get("trainlab.pareto") == "true"}
    assert tagged == front
    assert mlflow_client.get_run(parents[0].info.run_id).data.tags["trainlab.study.pareto_trials"] == ",".join(map(str, sorted(front)))


@pytest.mark.integration
def test_a_single_metric_with_a_constraint_picks_the_best_feasible_trial(workdir, cli, tracking_uri, mlflow_client):
    study = {
        "name": "budget",
        "metric": "val/acc",
        "direction": "maximize",
        "constraints": {"model/params": f"<= {PARAMS_BOUND}"},
        "n_trials": 4,
        "sampler": {"type": "tpe", "seed": 3, "n_startup_trials": 4},
        "pruner": "none",
    }
    result = cli("study", _study_file(workdir, study, trainer={"max_epochs": 1, "enable_progress_bar": False}))
    assert result.code == 0, result

    runs = all_runs(tracking_uri)
    parent = next(r for r in runs if r.data.tags.get("trainlab.kind") == "study")
    trials = [r for r in runs if r.data.tags.get("trainlab.kind") == "trial"]
    scored = {
        int(r.data.tags["trainlab.trial"]): (max(m.value for m in mlflow_client.get_metric_history(r.info.run_id, "val/acc")), r.data.metrics["model/params"])
        for r in trials
    }
    feasible = {n: acc for n, (acc, params) in scored.items() if params <= PARAMS_BOUND}
    assert feasible and len(feasible) < len(scored), "the seed must give feasible and infeasible trials"
    expected = min(feasible, key=lambda n: (-feasible[n], n))
    assert parent.data.tags["trainlab.study.best_trial"] == str(expected)
    assert "infeasible: model/params" in result.out
    with open(mlflow_client.download_artifacts(parent.info.run_id, "trials.csv", str(workdir))) as handle:
        rows = {int(row["number"]): row for row in csv.DictReader(handle)}
    assert {n: row["feasible"] == "true" for n, row in rows.items()} == {n: n in feasible for n in scored}
