"""``--refit-best``: train the best trial's config once more on train+val, test it, log the model.

The refit trains for as many epochs as the best trial needed to reach its best validation value (there
is no validation split left to pick a checkpoint by), through the same ``fit_run`` as every run, as a
child of the study's parent run tagged ``trainlab.kind=refit``. The trained model is logged with MLflow's
PyTorch flavour (``mlflow.pytorch.load_model(f"runs:/{run_id}/model")``).
"""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback

from trainlab.config.experiment import get_dotted, set_dotted
from trainlab.studies.spec import StudySpec
from trainlab.studies.trial import MLFLOW_RUN_ATTR


class _KeepModel(Callback):
    """Holds on to the trained module (fit_run does not return it) and two training inputs as the example
    MLflow traces the model with and derives its signature from."""

    model = None
    example = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.example is None:
            self.example = batch[0][:2].detach().cpu().numpy()

    def on_fit_end(self, trainer, pl_module) -> None:
        self.model = pl_module


def refit_best(study, spec: StudySpec, tracking_uri: str, parent_run_id: str):
    """Returns the refit's ``RunResult``."""
    import lightning
    import mlflow
    import torch
    import torchmetrics

    from trainlab.config import resolve_run_config
    from trainlab.studies.report import recorded_config
    from trainlab.tracking.store import tracking_client
    from trainlab.training import fit_run

    best = study.best_trial
    source_run = best.user_attrs[MLFLOW_RUN_ATTR]
    document = recorded_config(tracking_client(tracking_uri), source_run)
    steps = best.intermediate_values
    pick = max if spec.direction == "maximize" else min
    best_epoch = pick(steps, key=steps.get) if steps else document["trainer"].get("max_epochs", 1) - 1
    set_dotted(document, "trainer.max_epochs", int(best_epoch) + 1)
    set_dotted(document, "trainer.limit_val_batches", 0)
    set_dotted(document, "trainer.num_sanity_val_steps", 0)
    set_dotted(document, "trainer.enable_checkpointing", False)
    if get_dotted(document, "data.init_args.val_fraction") is not None:
        set_dotted(document, "data.init_args.val_fraction", 0.0)  # validation data joins the training data
    set_dotted(document, "tracking.run_name", f"{spec.name}-refit")
    keep = _KeepModel()
    tags = {"trainlab.kind": "refit", "trainlab.study": spec.name, "trainlab.refit_of": source_run, "trainlab.trial": str(best.number)}
    result = fit_run(resolve_run_config(document), tracking_uri, parent_run_id=parent_run_id, tags=tags, callbacks=[keep])
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=result.run_id):
        # Explicit requirements: inferring them loads the model in a subprocess, slower than the refit.
        # Pickle, not the newer traced pt2 format: torch.export cannot trace a LightningModule with metrics.
        requirements = [f"torch=={torch.__version__.split('+')[0]}", f"lightning=={lightning.__version__}", f"torchmetrics=={torchmetrics.__version__}"]
        mlflow.pytorch.log_model(
            keep.model.cpu().eval(), name="model", input_example=keep.example, pip_requirements=requirements, serialization_format="pickle"
        )
    return result
