"""The epoch logger writes every epoch's metrics with the epoch as step, holding fast epochs for one write."""

from __future__ import annotations

import pytest

from trainlab.tracking import logger as logger_module
from trainlab.tracking.logger import EpochMLFlowLogger


@pytest.fixture
def run_logger(mlflow_client, tracking_uri):
    experiment_id = mlflow_client.create_experiment("logger")
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    return EpochMLFlowLogger(run_id=run_id, tracking_uri=tracking_uri, experiment_name="logger")


def _steps(client, run_id: str, name: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))


def test_fast_epochs_wait_for_one_write_and_keep_their_steps(run_logger, mlflow_client, monkeypatch):
    monkeypatch.setattr(logger_module, "MIN_SECONDS_BETWEEN_WRITES", 3600.0)
    for epoch in range(5):
        run_logger.log_metrics({"train/loss": 1.0 / (epoch + 1), "epoch": epoch})
        run_logger.log_metrics({"val/acc": epoch / 10, "epoch": epoch})
    assert _steps(mlflow_client, run_logger.run_id, "train/loss") == [], "epochs this fast are held back"

    run_logger.flush()

    expected = [(epoch, 1.0 / (epoch + 1)) for epoch in range(5)]
    assert _steps(mlflow_client, run_logger.run_id, "train/loss") == expected
    assert [step for step, _ in _steps(mlflow_client, run_logger.run_id, "val/acc")] == list(range(5))
    assert run_logger.history["train/loss"] == expected
    for epoch in range(5):  # each epoch's metrics carry one timestamp, as if written together
        stamps = {m.timestamp for name in ("train/loss", "val/acc") for m in mlflow_client.get_metric_history(run_logger.run_id, name) if m.step == epoch}
        assert len(stamps) == 1


def test_slow_epochs_are_written_as_the_next_begins(run_logger, mlflow_client, monkeypatch):
    monkeypatch.setattr(logger_module, "MIN_SECONDS_BETWEEN_WRITES", 0.0)
    run_logger.log_metrics({"train/loss": 0.5, "epoch": 0})
    assert _steps(mlflow_client, run_logger.run_id, "train/loss") == []
    run_logger.log_metrics({"train/loss": 0.4, "epoch": 1})
    run_logger.wait_for_writes()  # epoch 0 went out asynchronously when epoch 1 began
    assert _steps(mlflow_client, run_logger.run_id, "train/loss") == [(0, 0.5)]
    run_logger.finalize()
    assert _steps(mlflow_client, run_logger.run_id, "train/loss") == [(0, 0.5), (1, 0.4)]


def test_more_metrics_than_one_request_takes_are_all_written(run_logger, mlflow_client, monkeypatch):
    monkeypatch.setattr(logger_module, "MIN_SECONDS_BETWEEN_WRITES", 3600.0)
    for epoch in range(3):
        run_logger.log_metrics({f"m{i}": float(i) for i in range(400)} | {"epoch": epoch})
    run_logger.flush()
    assert len(mlflow_client.get_metric_history(run_logger.run_id, "m399")) == 3
    assert mlflow_client.get_run(run_logger.run_id).data.metrics["m0"] == 0.0


def test_asynchronous_writes_are_all_stored_when_flush_returns(run_logger, mlflow_client, monkeypatch):
    monkeypatch.setattr(logger_module, "MIN_SECONDS_BETWEEN_WRITES", 0.0)  # every epoch goes out as the next begins
    for epoch in range(30):
        run_logger.log_metrics({"train/loss": 1.0 / (epoch + 1), "val/acc": epoch / 30, "epoch": epoch})
    run_logger.flush()
    assert _steps(mlflow_client, run_logger.run_id, "train/loss") == [(epoch, 1.0 / (epoch + 1)) for epoch in range(30)]
    assert len(mlflow_client.get_metric_history(run_logger.run_id, "val/acc")) == 30
