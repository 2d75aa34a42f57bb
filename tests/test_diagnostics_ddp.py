"""Diagnostics under DDP (2 CPU processes over gloo): rank 0 alone writes, and test counts cover both ranks."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import all_runs

pytestmark = pytest.mark.ddp


def test_ddp_run_has_verdicts_once_and_a_confusion_matrix_over_both_ranks(workdir, fast_digits, tracking_uri, mlflow_client):
    from trainlab.datamodules import Digits

    command = [sys.executable, "-m", "trainlab", "train", str(fast_digits), "trainer.max_epochs=2",
               "trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu"]
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run,) = all_runs(tracking_uri)
    assert run.data.tags["trainlab.gradients"] in ("healthy", "vanishing", "exploding")
    assert [m.step for m in mlflow_client.get_metric_history(run.info.run_id, "gradients/grad_norm/net.layers.1")] == [0, 1]
    assert [a.path for a in mlflow_client.list_artifacts(run.info.run_id, "diagnostics")].count("diagnostics/confusion_matrix.png") == 1

    # Each rank tests half of the test set; recall weighted by the whole test set's class counts equals
    # the test accuracy only if the matrix holds the counts of both halves.
    data = Digits(batch_size=64)
    data.prepare_data()
    data.setup("test")
    counts = torch.bincount(torch.cat([y for _, y in data.test_dataloader()]), minlength=10)
    recalls = torch.tensor([run.data.metrics[f"test/recall/{c}"] for c in range(10)], dtype=torch.float64)
    assert float((recalls * counts).sum() / counts.sum()) == pytest.approx(run.data.metrics["test/acc"], abs=1e-6)
