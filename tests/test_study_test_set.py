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


def test_a_study_leaves_no_checkpoint_folders_behind(workdir, cli):
    """Finished and pruned trials remove their checkpoint folders; only a killed or failed run keeps one."""
    document = yaml.safe_load((STUDIES / "digits_mlp.yaml").read_text())
    document["trainer"]["max_epochs"] = 4
    document["study"].update({"n_trials": 6, "jobs": 1, "pruner": {"type": "median", "n_startup_trials": 1, "n_warmup_steps": 1},
                              "sampler": {"type": "random", "seed": 3}})
    (workdir / "study.yaml").write_text(yaml.safe_dump(document, sort_keys=False))

    result = cli("study", workdir / "study.yaml")
    assert result.code == 0, result.err
    assert "pruned" in result.out
    assert not list((workdir / "checkpoints").glob("*")), sorted((workdir / "checkpoints").glob("*"))
