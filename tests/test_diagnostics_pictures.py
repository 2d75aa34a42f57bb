"""Pictures of what a net learned and predicted: confusion matrix, first-layer filters, activations, masks, forecasts."""

from __future__ import annotations

import matplotlib.image
import pytest
import torch
import yaml

from conftest import all_runs

pytestmark = pytest.mark.integration


def _experiment(workdir, model: dict, data: dict, **sections) -> str:
    document = {
        "seed_everything": 3,
        "model": model,
        "data": data,
        "trainer": {"max_epochs": 2, "enable_progress_bar": False},
        "tracking": {"experiment": "pictures"},
        **sections,
    }
    path = workdir / "experiment.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return str(path)


def _picture(client, run_id: str, artifact: str, workdir):
    """The logged PNG as an (height, width, channels) array: it exists and is a real image."""
    local = client.download_artifacts(run_id, artifact, str(workdir / "downloads"))
    return matplotlib.image.imread(local)


def test_cnn_on_digits_gets_confusion_matrix_filters_and_activation_histograms(cli, workdir, tracking_uri, mlflow_client):
    from trainlab.datamodules import Digits

    path = _experiment(
        workdir,
        {"class_path": "CNNClassifier", "init_args": {"channels": [8, 16], "hidden_size": 32}},
        {"class_path": "Digits", "init_args": {"batch_size": 64}},
        diagnostics={"activation_histograms": True},
    )
    result = cli("train", path)
    assert result.code == 0, result
    (run,) = all_runs(tracking_uri)
    metrics = run.data.metrics
    for artifact in ("diagnostics/confusion_matrix.png", "diagnostics/conv1_filters.png", "diagnostics/activation_histograms.png"):
        assert _picture(mlflow_client, run.info.run_id, artifact, workdir).shape[0] > 100, artifact

    # Per-class recall, weighted by each class's share of the test set, is the test accuracy: the matrix
    # counts exactly the test set, as predicted by the tested (best) checkpoint.
    data = Digits(batch_size=64)
    data.prepare_data()
    data.setup("test")
    labels = torch.cat([y for _, y in data.test_dataloader()])
    counts = torch.bincount(labels, minlength=10)
    recalls = torch.tensor([metrics[f"test/recall/{c}"] for c in range(10)], dtype=torch.float64)
    assert float((recalls * counts).sum() / counts.sum()) == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert all(0.0 <= metrics[f"test/precision/{c}"] <= 1.0 for c in range(10) if f"test/precision/{c}" in metrics)


def test_segmentation_run_gets_a_grid_of_test_images_with_masks(cli, workdir, tracking_uri, mlflow_client):
    path = _experiment(
        workdir,
        {"class_path": "UNetSegmenter", "init_args": {"width": 4, "depth": 2}},
        {"class_path": "NucleiTiles", "init_args": {"tile": 64, "augment": False, "batch_size": 32}},
        diagnostics={"test_predictions": {"samples": 4}},
    )
    result = cli("train", path, "trainer.max_epochs=1")
    assert result.code == 0, result
    (run,) = all_runs(tracking_uri)
    picture = _picture(mlflow_client, run.info.run_id, "diagnostics/segmentation_test_samples.png", workdir)
    # One row per requested sample, three panels (image, true mask, predicted mask) per row.
    assert picture.shape[0] / picture.shape[1] == pytest.approx(4 / 3, rel=0.02)


def test_forecasting_run_gets_predicted_vs_true_test_series(cli, workdir, tracking_uri, mlflow_client):
    path = _experiment(
        workdir,
        {"class_path": "RNNForecaster", "init_args": {"cell": "gru", "hidden_size": 16}},
        {"class_path": "StatsmodelsSeries", "init_args": {"dataset": "sunspots", "window": 12, "horizon": 3, "batch_size": 32}},
    )
    result = cli("train", path)
    assert result.code == 0, result
    (run,) = all_runs(tracking_uri)
    assert _picture(mlflow_client, run.info.run_id, "diagnostics/forecast_test.png", workdir).shape[0] > 100
    assert "diagnostics/confusion_matrix.png" not in {a.path for a in mlflow_client.list_artifacts(run.info.run_id, "diagnostics")}
