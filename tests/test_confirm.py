"""`trainlab confirm`: a study's top trials re-run over fresh seeds, mean ± 95% interval, ranking verdict on the parent."""

from __future__ import annotations

import csv
import io
from urllib.parse import urlparse
from pathlib import Path

import pytest

from conftest import all_runs
from test_reproduce_study import STUDY, make_study

pytestmark = pytest.mark.integration


def test_confirm_reruns_top_trials_over_seeds_and_logs_to_the_parent(cli, fast_digits, tracking_uri, mlflow_client):
    parent_id, trial_ids = make_study(tracking_uri, fast_digits)

    result = cli("confirm", STUDY, "--top-k", "2", "--seeds", "2")
    assert result.code == 0, result
    assert "seeds 1, 2" in result.out
    assert "ranking holds" in result.out or "ranking does NOT hold" in result.out
    assert "95% intervals of the best and the runner-up" in result.out

    confirmations = [r for r in all_runs(tracking_uri) if r.data.tags.get("trainlab.kind") == "confirmation"]
    assert len(confirmations) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in confirmations} == {parent_id}
    assert sorted((r.data.tags["trainlab.confirms"], r.data.tags["trainlab.seed"]) for r in confirmations) == sorted(
        (t, s) for t in trial_ids for s in ("1", "2")
    )
    assert all(r.info.status == "FINISHED" for r in confirmations)

    parent = mlflow_client.get_run(parent_id)
    assert parent.data.tags["trainlab.confirm.ranking_holds"] in ("true", "false")
    artifacts = {a.path for a in mlflow_client.list_artifacts(parent_id, "confirmation")}
    assert {"confirmation/confirmation.csv", "confirmation/confirmation.png"} <= artifacts
    table = (Path(urlparse(parent.info.artifact_uri).path) / "confirmation" / "confirmation.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(table)))
    assert len(rows) == 2
    for row in rows:
        seeds = [r for r in confirmations if r.data.tags["trainlab.confirms"] == row["trial run"]]
        values = [max(m.value for m in mlflow_client.get_metric_history(r.info.run_id, "val/acc")) for r in seeds]
        assert float(row["mean over seeds"]) == pytest.approx(sum(values) / 2, abs=1e-5)
        low, high = (float(x) for x in row["95% interval"].strip("[]").split(","))
        assert low <= min(values) and max(values) <= high


def test_confirm_refuses_bad_input(cli, fast_digits, tracking_uri):
    make_study(tracking_uri, fast_digits, lrs=())
    unknown = cli("confirm", "nope")
    assert unknown.code == 2 and "nope" in unknown.err and STUDY in unknown.err
    one_seed = cli("confirm", STUDY, "--seeds", "1")
    assert one_seed.code == 2 and "--seeds" in one_seed.err
    no_trials = cli("confirm", STUDY)
    assert no_trials.code == 2 and "finished trials" in no_trials.err
    assert not [r for r in all_runs(tracking_uri) if r.data.tags.get("trainlab.kind") == "confirmation"]
