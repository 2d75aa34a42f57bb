"""A run trained without pictures keeps its verdicts and numbers; its pictures can be drawn afterwards from the record."""

from __future__ import annotations

import matplotlib.image
import pytest

pytestmark = pytest.mark.integration


def _train_without_pictures(tracking_uri: str, mlflow_client) -> str:
    """A digits MLP trained as a study trial would be: every diagnostic on, pictures off, a real MLflow run."""
    import lightning as L

    from trainlab.datamodules import Digits
    from trainlab.diagnostics import diagnostic_callbacks
    from trainlab.models import MLPClassifier
    from trainlab.tracking.logger import EpochMLFlowLogger
    from trainlab.tracking.parameters import parameter_table

    L.seed_everything(0, verbose=False)
    data = Digits(batch_size=64)
    data.prepare_data()
    facts = data.describe()
    model = MLPClassifier(hidden_sizes=[32, 16], input_shape=facts["input_shape"], num_classes=facts["num_classes"])
    run_id = mlflow_client.create_run(mlflow_client.create_experiment("trial")).info.run_id
    mlflow_client.log_text(run_id, parameter_table(model), "model/parameters.csv")  # as fit_run records it
    logger = EpochMLFlowLogger(run_id=run_id, tracking_uri=tracking_uri, experiment_name="trial")
    trainer = L.Trainer(
        max_epochs=3, logger=logger, callbacks=diagnostic_callbacks(None, model, pictures=False),
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    trainer.test(model, datamodule=data, verbose=False)
    logger.flush()
    return run_id


def _pictures(client, run_id: str) -> set[str]:
    return {a.path for folder in ("plots", "diagnostics") for a in client.list_artifacts(run_id, folder) if a.path.endswith(".png")}


def test_pictures_off_keeps_verdicts_and_metrics_and_draws_them_later(tracking_uri, mlflow_client, workdir):
    from trainlab.diagnostics.recorded import draw_recorded_pictures

    run_id = _train_without_pictures(tracking_uri, mlflow_client)
    run = mlflow_client.get_run(run_id)
    assert _pictures(mlflow_client, run_id) == set()
    assert run.data.tags["trainlab.gradients"] == "healthy" and run.data.tags["trainlab.overfitting"] in ("true", "false")
    assert "gradients/grad_norm/net.layers.1" in run.data.metrics and "test/recall/3" in run.data.metrics

    written = draw_recorded_pictures(mlflow_client, run_id)

    expected = {"plots/learning_curves.png", "diagnostics/gradient_flow_heatmap.png", "diagnostics/gradient_flow_layers.png"}
    assert set(written) == expected == _pictures(mlflow_client, run_id)
    for artifact in expected:
        image = matplotlib.image.imread(mlflow_client.download_artifacts(run_id, artifact, str(workdir)))
        assert image.shape[0] > 200 and image.shape[1] > 500, artifact
    assert draw_recorded_pictures(mlflow_client, run_id) == []  # what a run has is not drawn twice
