"""Trials never touch the test set; the study's best trial is tested once, at the study's end."""

from __future__ import annotations

import pytest
import yaml

from conftest import STUDIES, all_runs

pytestmark = pytest.mark.integration


def test_only_the_best_trial_is_tested_and_only_at_the_end(workdir, cli, tracking_uri):
    document = yaml.safe_load((STUDIES / "digits_mlp.yaml").read_text())
    document["trainer"]["max_epochs"] = 3
    document["study"].update({"n_trials": 3, "jobs": 1, "pruner": "none"})
    (workdir / "study.yaml").write_text(yaml.safe_dump(document, sort_keys=False))

    result = cli("study", workdir / "study.yaml")
    assert result.code == 0, result.err

    trials = {int(r.data.tags["trainlab.trial"]): r for r in all_runs(tracking_uri) if r.data.tags.get("trainlab.kind") == "trial"}
    best = int(next(r for r in all_runs(tracking_uri) if r.data.tags.get("trainlab.kind") == "study").data.tags["trainlab.study.best_trial"])
    tested = {number for number, run in trials.items() if any(key.startswith("test/") for key in run.data.metrics)}
    assert tested == {best}, "the best trial alone has test metrics"
    assert "study's end" in trials[best].data.tags["trainlab.test"]
    assert f"best trial {best} tested: test/acc={trials[best].data.metrics['test/acc']:.4f}" in result.out
