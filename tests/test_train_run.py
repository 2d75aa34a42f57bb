"""One tracked training run end to end: status, curves, test metrics, artifacts, exact re-run from config.yaml."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from conftest import REPO, all_runs

pytestmark = pytest.mark.integration

EXPECTED_ARTIFACTS = {
    "config.yaml",
    "environment.json",
    "data_fingerprint.json",
    "model_summary.txt",
    "plots/learning_curves.png",
    "checkpoints/best.pt",
}


def _artifact_paths(client, run_id, path=None):
    paths = []
    for item in client.list_artifacts(run_id, path):
        paths.extend(_artifact_paths(client, run_id, item.path) if item.is_dir else [item.path])
    return paths


def _histories(client, run_id, names):
    return {name: [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)] for name in names}


def test_train_records_a_finished_run_and_rerun_from_config_is_identical(cli, workdir, fast_digits, mlflow_client, tracking_uri):
    result = cli("train", fast_digits)
    assert result.code == 0, result
    runs = all_runs(tracking_uri)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "mlp-baseline"
    assert run.info.run_id in result.out

    # Per-epoch curves with the epoch as step, test metrics, params from the resolved config.
    curves = _histories(mlflow_client, run.info.run_id, ["train/loss", "val/loss", "val/acc", "optim/lr"])
    for name, points in curves.items():
        assert [step for step, _ in points] == [0, 1, 2], name
    assert curves["train/loss"][-1][1] < curves["train/loss"][0][1], "training loss should fall"
    assert run.data.metrics["test/acc"] > 0.85
    assert {"test/loss", "test/f1"} <= set(run.data.metrics)
    assert run.data.params["model.init_args.dropout"] == "0.1"
    assert run.data.params["data.class_path"] == "trainlab.datamodules.Digits"
    assert int(run.data.params["model.params_total"]) == (64 + 1) * 128 + (128 + 1) * 64 + (64 + 1) * 10

    # One batch per epoch: every metric of an epoch carries the same timestamp.
    for step in range(3):
        stamps = {m.timestamp for name in ("train/loss", "val/loss", "val/acc") for m in mlflow_client.get_metric_history(run.info.run_id, name) if m.step == step}
        assert len(stamps) == 1, (step, stamps)

    assert EXPECTED_ARTIFACTS <= set(_artifact_paths(mlflow_client, run.info.run_id))
    local = mlflow_client.download_artifacts(run.info.run_id, "", str(workdir / "artifacts"))
    best = torch.load(os.path.join(local, "checkpoints", "best.pt"), weights_only=True)
    assert any(key.startswith("net.") for key in best["state_dict"])
    environment = yaml.safe_load(open(os.path.join(local, "environment.json")))
    assert environment["packages"]["torch"] and environment["hardware"]["cpu"]
    fingerprint = yaml.safe_load(open(os.path.join(local, "data_fingerprint.json")))
    assert set(fingerprint) == {"train", "val", "test"}

    # The logged config.yaml is itself an experiment file, and running it gives identical metrics.
    rerun = cli("train", os.path.join(local, "config.yaml"))
    assert rerun.code == 0, rerun
    second = [r for r in all_runs(tracking_uri) if r.info.run_id != run.info.run_id][0]
    assert second.info.status == "FINISHED"
    for name in ("test/acc", "test/loss", "val/loss"):
        assert second.data.metrics[name] == run.data.metrics[name], name
    assert _histories(mlflow_client, second.info.run_id, ["train/loss", "val/acc"]) == _histories(
        mlflow_client, run.info.run_id, ["train/loss", "val/acc"]
    )


def test_failure_mid_training_ends_failed_and_keeps_recorded_metrics(cli, workdir, fast_digits, mlflow_client, tracking_uri):
    result = cli("train", fast_digits, "model.class_path=failing_models.FailsAtSecondEpoch")
    assert result.code == 1
    assert "FAILED" in result.err and "deliberate failure at epoch 1" in result.err
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "FAILED"
    assert "deliberate failure at epoch 1" in run.data.tags["trainlab.status_reason"]
    assert [m.step for m in mlflow_client.get_metric_history(run.info.run_id, "val/loss")] == [0]
    assert "config.yaml" in _artifact_paths(mlflow_client, run.info.run_id)


def test_default_store_is_mlflow_db_in_working_directory_and_env_overrides(cli, workdir, fast_digits, monkeypatch):
    assert cli("train", fast_digits, "trainer.max_epochs=1").code == 0
    assert (workdir / "mlflow.db").exists()
    other = workdir / "other.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{other}")
    assert cli("train", fast_digits, "trainer.max_epochs=1").code == 0
    assert len(all_runs(f"sqlite:///{other}")) == 1
    listing = cli("runs", "--experiment", "digits-mlp")
    assert listing.code == 0 and "FINISHED" in listing.out and "test/acc" in listing.out


def test_sigterm_ends_the_run_killed(workdir, fast_digits, tracking_uri):
    """A real process, a real signal: the run must end KILLED, never stay RUNNING."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    all_runs(tracking_uri)  # create the store first: polling a store mid-creation races its migrations
    process = subprocess.Popen(
        [sys.executable, "-m", "trainlab", "train", str(fast_digits), "trainer.max_epochs=200",
         "model.class_path=failing_models.SlowClassifier"],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            runs = all_runs(tracking_uri)
            if runs and "val/loss" in runs[0].data.metrics:
                break
            assert process.poll() is None, process.stdout.read()
            time.sleep(0.5)
        else:
            pytest.fail("run never reached its first epoch")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read()
    (run,) = all_runs(tracking_uri)
    assert process.returncode != 0, output
    assert run.info.status == "KILLED", (run.data.tags, output[-3000:])


def test_help_does_not_import_heavy_libraries():
    code = "import sys, trainlab.cli as c; c.build_parser(); print(sorted(m for m in ('torch', 'mlflow', 'lightning', 'optuna') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
