"""Gradient flow on the two example files: a deep sigmoid MLP vanishes, the same depth with ReLU + batch norm does not."""

from __future__ import annotations

import pytest

from conftest import STUDIES, all_runs

pytestmark = pytest.mark.integration


def _only_run(tracking_uri):
    (run,) = all_runs(tracking_uri)
    return run


def _artifacts(client, run_id, path):
    return {item.path for item in client.list_artifacts(run_id, path)}


def test_deep_sigmoid_mlp_is_tagged_vanishing_with_its_first_layers(cli, workdir, tracking_uri, mlflow_client):
    result = cli("train", STUDIES / "gradients_sigmoid_deep.yaml", "trainer.max_epochs=2")
    assert result.code == 0, result
    run = _only_run(tracking_uri)
    tags = run.data.tags
    assert tags["trainlab.gradients"] == "vanishing"
    responsible = tags["trainlab.gradients.layers"].split(", ")
    # The layers nearest the input starve first; the output layer is never among them.
    assert responsible[0] == "net.layers.1" and "net.layers.17" not in responsible
    assert "Vanishing gradients" in tags["mlflow.note.content"] and "batch norm" in tags["mlflow.note.content"]

    first = mlflow_client.get_metric_history(run.info.run_id, "gradients/grad_norm/net.layers.1")
    last = mlflow_client.get_metric_history(run.info.run_id, "gradients/grad_norm/net.layers.17")
    assert [m.step for m in first] == [0, 1]
    assert all(f.value < 1e-3 * l.value for f, l in zip(first, last))
    assert len(mlflow_client.get_metric_history(run.info.run_id, "gradients/update_ratio/net.layers.1")) == 2
    assert {"diagnostics/gradient_flow_heatmap.png", "diagnostics/gradient_flow_layers.png"} <= _artifacts(
        mlflow_client, run.info.run_id, "diagnostics"
    )


def test_same_depth_with_relu_and_batch_norm_is_healthy(cli, workdir, tracking_uri):
    result = cli("train", STUDIES / "gradients_relu_bn.yaml", "trainer.max_epochs=2")
    assert result.code == 0, result
    tags = _only_run(tracking_uri).data.tags
    assert tags["trainlab.gradients"] == "healthy"
    assert tags["trainlab.gradients.layers"] == "-"
    assert "mlflow.note.content" not in tags  # nothing to warn about
    assert tags["trainlab.overfitting"] == "false"
    assert "trainlab.warning" not in tags
