"""DDP within a run: 2 CPU processes over gloo make exactly one MLflow run with exact, reduced metrics."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import all_runs

pytestmark = pytest.mark.ddp


def test_two_process_ddp_run_is_one_run_with_exact_test_metrics(workdir, fast_digits, tracking_uri, mlflow_client):
    command = [sys.executable, "-m", "trainlab", "train", str(fast_digits), "trainer.max_epochs=2",
               "trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu"]
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FAILED" not in done.stderr

    runs = all_runs(tracking_uri)
    assert len(runs) == 1, "every rank but 0 must stay away from MLflow"
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert [m.step for m in mlflow_client.get_metric_history(run.info.run_id, "val/acc")] == [0, 1]
    artifacts = [a.path for a in mlflow_client.list_artifacts(run.info.run_id)]
    assert artifacts.count("config.yaml") == 1
    environment = yaml.safe_load(open(mlflow_client.download_artifacts(run.info.run_id, "environment.json", str(workdir))))
    assert environment["distributed"]["world_size"] == 2

    # Recompute test accuracy over the whole test split with the logged best weights: the two shards
    # together must cover every test sample exactly once (no padding duplicates).
    local = mlflow_client.download_artifacts(run.info.run_id, "", str(workdir / "artifacts"))
    config = yaml.safe_load(open(os.path.join(local, "config.yaml")))
    from lightning.pytorch.cli import instantiate_class

    datamodule = instantiate_class((), config["data"])
    datamodule.prepare_data()
    x, y = datamodule.splits["test"]
    model = instantiate_class((), config["model"])
    model.load_state_dict(torch.load(os.path.join(local, "checkpoints", "best.pt"), weights_only=True)["state_dict"])
    model.eval()
    with torch.no_grad():
        accuracy = (model(x).argmax(dim=1) == y).float().mean().item()
    assert run.data.metrics["test/acc"] == pytest.approx(accuracy, abs=1e-6)
