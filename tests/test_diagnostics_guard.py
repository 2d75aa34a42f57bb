"""Learning rates far too high: the non-finite guard ends the run FAILED at the first NaN; a blow-up is tagged diverging."""

from __future__ import annotations

import re

import pytest

from conftest import STUDIES, all_runs

pytestmark = pytest.mark.integration

SGD = ("optimizer.class_path=torch.optim.SGD", "optimizer.init_args.weight_decay=0.0")


def test_exploding_loss_ends_the_run_failed_naming_step_and_layer(cli, workdir, tracking_uri, mlflow_client):
    result = cli("train", STUDIES / "digits_mlp.yaml", *SGD, "optimizer.init_args.lr=1000", "trainer.max_epochs=3")
    assert result.code == 1, result
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "FAILED"
    reason = run.data.tags["trainlab.status_reason"]
    match = re.fullmatch(
        r"NonFiniteError: non-finite loss \((nan|inf)\) at training step (\d+) \(epoch 0, batch (\d+)\); "
        r"first non-finite value in the forward pass: output of (net\.layers\.\d+ \(Linear\))",
        reason,
    )
    assert match, reason
    assert reason in result.err
    step, layer = match.group(2), match.group(4)
    assert run.data.tags["trainlab.non_finite.step"] == step
    assert run.data.tags["trainlab.non_finite.layer"] == layer
    # It stopped there: not one epoch completed, so no epoch-level training metric was ever written.
    assert mlflow_client.get_metric_history(run.info.run_id, "train/loss") == []
    # The other diagnostics still left their verdicts before the run ended.
    assert run.data.tags["trainlab.gradients"] == "exploding"
    assert run.data.tags["trainlab.warning"] == "diverging"
    assert "learning rate 1000" in run.data.tags["mlflow.note.content"]


def test_loss_blow_up_without_nan_is_tagged_diverging(cli, workdir, tracking_uri):
    result = cli("train", STUDIES / "digits_mlp.yaml", "optimizer.init_args.lr=0.3", "trainer.max_epochs=3")
    assert result.code == 0, result
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "FINISHED"
    assert run.data.tags["trainlab.warning"] == "diverging"
    note = run.data.tags["mlflow.note.content"]
    assert "Warning: training loss is diverging" in note and "learning rate 0.3" in note
