"""Overfitting on purpose: a big net on a tiny training split must be caught at the epoch validation loss bottoms out."""

from __future__ import annotations

import pytest

from conftest import STUDIES, all_runs

pytestmark = pytest.mark.integration

# studies/overfitting_digits.yaml: a 2x512 MLP on 10% of the digits' training part; 8 epochs are enough.
OVERFITTING = STUDIES / "overfitting_digits.yaml"


def test_big_net_on_tiny_split_reports_overfit_epoch_gap_and_cures(cli, workdir, tracking_uri, mlflow_client):
    result = cli("train", OVERFITTING, "trainer.max_epochs=8", "tracking.description=baseline on 10% of the data")
    assert result.code == 0, result
    (run,) = all_runs(tracking_uri)
    history = {
        name: [m.value for m in sorted(mlflow_client.get_metric_history(run.info.run_id, name), key=lambda m: m.step)]
        for name in ("train/loss", "val/loss", "loss_gap")
    }

    # The detected epoch is where validation loss is lowest, and training loss kept falling after it.
    overfit_epoch = int(run.data.metrics["overfit_epoch"])
    val, train = history["val/loss"], history["train/loss"]
    assert val[overfit_epoch] == min(val) and overfit_epoch < len(val) - 2
    assert train[-1] < train[overfit_epoch]
    assert run.data.tags["trainlab.overfitting"] == "true"

    # The gap is validation minus training loss, per epoch and at the end.
    assert history["loss_gap"] == pytest.approx([v - t for v, t in zip(val, train)], rel=1e-5)
    assert run.data.metrics["overfit_gap"] == pytest.approx(val[-1] - train[-1], rel=1e-5)

    note = run.data.tags["mlflow.note.content"]
    user, _, ours = note.partition("\n\n")  # appended below the user's text, between markers that let a resume replace it
    assert user == "baseline on 10% of the data" and ours.splitlines()[1].startswith(f"Overfitting from epoch {overfit_epoch}:"), note
    for cure in ("dropout", "weight decay", "early stopping"):
        assert cure in note
    assert "plots/learning_curves.png" in {a.path for a in mlflow_client.list_artifacts(run.info.run_id, "plots")}

