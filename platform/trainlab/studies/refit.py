"""``--refit-best``: train the best trial's config once more on train+val, test it, log the model.

The refit trains for as many epochs as the best trial needed to reach its best validation value (there
is no validation split left to pick a checkpoint by), through ``launch`` like every run (a multi-device
trial's refit trains as a process group too), as a child of the study's parent run tagged
``trainlab.kind=refit``. The trained model is logged with MLflow's PyTorch flavour where it was trained,
on rank 0 (``mlflow.pytorch.load_model(f"runs:/{run_id}/model")``).
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback

from trainlab.contract import best_by_direction
from trainlab.studies.spec import StudySpec
from trainlab.studies.trial import MLFLOW_RUN_ATTR
from trainlab.training.launch import Role


_WATCH_VALIDATION = ("ModelCheckpoint", "EarlyStopping")
MODEL_ARTIFACT = "model"
MODEL_FORMAT_TAG = "trainlab.model_format"  # "pt2", or "pickle: why torch.export could not trace it"


def model_uri(run_id: str) -> str:
    """What ``mlflow.pytorch.load_model`` loads the refit model from."""
    return f"runs:/{run_id}/{MODEL_ARTIFACT}"


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


class RefitRole(Role):
    """Keeps the trained module and, on rank 0 once the run finished, logs it as the run's ``model``."""

    log_name = "refit_process.log"

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.keep = _KeepModel()

    def to_launch(self) -> dict[str, Any]:
        return {"tracking_uri": self.tracking_uri}

    @classmethod
    def from_launch(cls, fields: dict[str, Any]) -> RefitRole:
        return cls(fields["tracking_uri"])

    def callbacks(self) -> list[Any]:
        return [self.keep]

    def after_run(self, result) -> None:
        log_model(self.tracking_uri, result.run_id, self.keep.model, self.keep.example)


def log_model(tracking_uri: str, run_id: str, model, example) -> None:
    """Log ``model`` on the finished run ``run_id`` with MLflow's PyTorch flavour (an MLflow Model)."""
    import lightning
    import mlflow
    import torch
    import torchmetrics

    # An optimizer section injected as the instance's configure_optimizers (training/build.py) is training
    # wiring, not part of the model, and a bound partial does not unpickle: the class's own method stays.
    vars(model).pop("configure_optimizers", None)
    mlflow.set_tracking_uri(tracking_uri)  # MLflow's model logging works through its fluent, active-run API
    with mlflow.start_run(run_id=run_id):
        # Explicit requirements: inferring them loads the model in a subprocess, slower than the refit.
        requirements = [f"torch=={torch.__version__.split('+')[0]}", f"lightning=={lightning.__version__}", f"torchmetrics=={torchmetrics.__version__}"]
        model = model.cpu().eval()
        # pt2 (torch.export) loads without unpickling code; a module torch.export cannot trace is pickled,
        # and the run says so and why (loading a pickle runs whatever it names: load only models you trust).
        try:
            mlflow.pytorch.log_model(model, name=MODEL_ARTIFACT, input_example=example, pip_requirements=requirements, serialization_format="pt2")
            form = "pt2"
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            mlflow.pytorch.log_model(model, name=MODEL_ARTIFACT, input_example=example, pip_requirements=requirements, serialization_format="pickle")
            form = f"pickle: torch.export could not trace the module ({type(exc).__name__}: {reason})"
        mlflow.set_tag(MODEL_FORMAT_TAG, form)


def refit_config(study, spec: StudySpec, tracking_uri: str):
    """The best trial's recorded config, set to train on train+val for the epochs the trial needed."""
    from trainlab.config import resolve_run_config
    from trainlab.config.experiment import get_dotted, set_dotted
    from trainlab.reproduce.recorded import recorded_config
    from trainlab.tracking.store import tracking_client

    best = study.best_trial
    document = recorded_config(tracking_client(tracking_uri), best.user_attrs[MLFLOW_RUN_ATTR])
    steps = best.intermediate_values
    best_epoch = best_by_direction(steps, spec.direction, key=steps.get) if steps else document["trainer"].get("max_epochs", 1) - 1
    set_dotted(document, "trainer.max_epochs", int(best_epoch) + 1)
    set_dotted(document, "trainer.limit_val_batches", 0)
    set_dotted(document, "trainer.num_sanity_val_steps", 0)
    set_dotted(document, "trainer.enable_checkpointing", False)
    # No validation split is left: callbacks that watch a validation metric would refuse to run.
    callbacks = get_dotted(document, "trainer.callbacks") or []
    kept = [c for c in callbacks if not str((c or {}).get("class_path", "")).endswith(_WATCH_VALIDATION)]
    if len(kept) != len(callbacks):
        set_dotted(document, "trainer.callbacks", kept)
    if get_dotted(document, "data.init_args.val_fraction") is not None:
        set_dotted(document, "data.init_args.val_fraction", 0.0)  # validation data joins the training data
    set_dotted(document, "tracking.run_name", f"{spec.name}-refit")
    # The trial trained without a test pass and without pictures (studies/trial.py); the refit is the run
    # that is tested and drawn.
    document.pop("test", None)
    if isinstance(document.get("diagnostics"), dict):
        document["diagnostics"].pop("pictures", None)
    return resolve_run_config(document)


def refit_best(study, spec: StudySpec, tracking_uri: str, parent_run_id: str):
    """Returns the refit's ``RunResult``."""
    from trainlab.training.launch import launch

    best = study.best_trial
    tags = {"trainlab.kind": "refit", "trainlab.study": spec.name, "trainlab.refit_of": best.user_attrs[MLFLOW_RUN_ATTR], "trainlab.trial": str(best.number)}
    return launch(refit_config(study, spec, tracking_uri), tracking_uri, parent_run_id=parent_run_id, tags=tags, role=RefitRole(tracking_uri))
