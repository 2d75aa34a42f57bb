"""The zoo's experiment files train through `trainlab train` to FINISHED runs with their task's metrics,
curves and artifacts, and beat the trivial answer even in a shortened run."""

from __future__ import annotations

import importlib.util

import pytest
import yaml

from conftest import STUDIES, all_runs, need

pytestmark = pytest.mark.integration

# file: (epochs of the short run, package its data needs, (metric, bound to beat, "gt"/"lt")); why that bound above each
CASES = {
    # Majority class of the 370 test utterances: 88 (speaker 3), 23.8%.
    "sequence_rnn.yaml": (8, "sktime", ("test/acc", 0.6, "gt")),
    # Persistence (next year = this year) on the test years: MAE 25.4 sunspots.
    "forecast_rnn.yaml": (15, "statsmodels", ("test/mae", 25.4, "lt")),
    # The all-background mask has Dice 0.
    "segmentation_unet.yaml": (4, "stardist", ("test/dice", 0.6, "gt")),
    # Majority class (benign): 63%.
    "tabular_mlp.yaml": (8, None, ("test/acc", 0.85, "gt")),
    # Predicting the training mean: R² ≈ 0.
    "tabular_regression_mlp.yaml": (20, None, ("test/r2", 0.2, "gt")),
}
TASK_METRICS = {
    "classification": {"test/acc", "test/f1", "test/loss"},
    "regression": {"test/mse", "test/mae", "test/r2", "test/loss"},
    "segmentation": {"test/dice", "test/iou", "test/loss"},
}


def _task_of(name: str) -> str:
    return {"sequence_rnn.yaml": "classification", "tabular_mlp.yaml": "classification", "segmentation_unet.yaml": "segmentation"}.get(name, "regression")


@pytest.mark.parametrize("name", list(CASES))
def test_experiment_file_trains_to_a_finished_run(name, cli, workdir, tracking_uri, mlflow_client):
    epochs, package, (metric, bound, direction) = CASES[name]
    if package:
        need(importlib.util.find_spec(package) is not None, f"{package} is not installed (pip install -e '.[data]')")

    result = cli("train", STUDIES / name, f"trainer.max_epochs={epochs}")

    assert result.code == 0, result
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert TASK_METRICS[_task_of(name)] <= set(metrics), sorted(metrics)
    assert (metrics[metric] > bound) if direction == "gt" else (metrics[metric] < bound), (metric, metrics[metric])

    history = mlflow_client.get_metric_history(run.info.run_id, "train/loss")
    assert len(history) >= 2 and len(mlflow_client.get_metric_history(run.info.run_id, "optim/lr")) == len(history)
    artifacts = {item.path for item in mlflow_client.list_artifacts(run.info.run_id)}
    artifacts |= {item.path for item in mlflow_client.list_artifacts(run.info.run_id, "model")}
    artifacts |= {item.path for item in mlflow_client.list_artifacts(run.info.run_id, "diagnostics")}
    assert {"config.yaml", "model/parameters.csv", "model_summary.txt"} <= artifacts

    table = mlflow_client.download_artifacts(run.info.run_id, "model/parameters.csv", str(workdir))
    total = open(table).read().strip().splitlines()[-1].split(",")
    assert total[0] == "total" and int(total[3]) == int(run.data.params["model.params_total"])

    # The diagnostics draw each task's test-set picture from these models' forward and batch format.
    if _task_of(name) == "classification":
        assert "diagnostics/confusion_matrix.png" in artifacts and "test/recall/0" in metrics
    elif _task_of(name) == "segmentation":
        assert "diagnostics/segmentation_test_samples.png" in artifacts
    elif name == "forecast_rnn.yaml":
        assert "diagnostics/forecast_test.png" in artifacts


def test_rnn_reads_digits_row_by_row(cli, workdir, tracking_uri):
    document = {
        "seed_everything": 0,
        "model": {"class_path": "RNNClassifier", "init_args": {"cell": "lstm", "hidden_size": 32}},
        "data": {"class_path": "DigitsSequence", "init_args": {"batch_size": 64}},
        "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
        "trainer": {"max_epochs": 4, "enable_progress_bar": False},
    }
    path = workdir / "digits_rows.yaml"
    path.write_text(yaml.safe_dump(document))

    result = cli("train", path)

    assert result.code == 0, result
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "FINISHED" and run.data.metrics["test/acc"] > 0.8  # 10 balanced classes: chance is 0.1
