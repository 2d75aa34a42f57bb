"""``--refit-best``: train the best trial's config once more on train+val, test it, log the model.

The refit trains for as many epochs as the best trial needed to reach its best validation value (there
is no validation split left to pick a checkpoint by), through ``launch`` like every run (a multi-device
trial's refit trains as a process group too), as a child of the study's parent run tagged
``trainlab.kind=refit``. The trained model is logged with MLflow's PyTorch flavour where it was trained,
on rank 0 (``mlflow.pytorch.load_model(f"runs:/{run_id}/model")``). ``--register NAME`` then adds it to
MLflow's Model Registry as the next version of ``NAME`` (``models:/NAME/VERSION``).
"""

from __future__ import annotations

import logging
from typing import Any

from lightning.pytorch.callbacks import Callback

from trainlab.contract import best_by_direction
from trainlab.studies.spec import StudySpec
from trainlab.studies.trial import MLFLOW_RUN_ATTR
from trainlab.training.launch import Role


_WATCH_VALIDATION = ("ModelCheckpoint", "EarlyStopping")
MODEL_ARTIFACT = "model"
MODEL_ID_TAG = "trainlab.model_id"  # MLflow 3's id of the refit's logged model (models:/<id>)
MODEL_FORMAT_TAG = "trainlab.model_format"  # "pt2", or "pickle: why torch.export could not trace it"


def model_uri(run_id: str) -> str:
    """What ``mlflow.pytorch.load_model`` loads the refit model from."""
    return f"runs:/{run_id}/{MODEL_ARTIFACT}"


def check_model_name(name: str) -> None:
    """``--register NAME`` checked by MLflow's own rule before anything is created (ConfigError otherwise)."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_name

    from trainlab.errors import ConfigError

    try:
        _validate_model_name(name)
    except MlflowException as exc:
        raise ConfigError("--register", name, "a non-empty model name without '/' or ':'", hint=exc.message) from None


def register_model(tracking_uri: str, run_id: str, name: str, tags: dict[str, str]) -> str:
    """Register the refit's logged model as the next version of ``name`` in MLflow's Model Registry (in the
    tracking store: sqlite or a tracking server); returns its ``models:/NAME/VERSION`` URI."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    from trainlab.tracking.store import tracking_client

    client = tracking_client(tracking_uri)
    run = client.get_run(run_id)
    # MLflow 3 keeps a logged model apart from the run's artifacts (models:/<model_id>), linked as a run
    # output; MLflow 2 keeps it under the run's artifacts.
    outputs = getattr(run, "outputs", None)
    model_ids = [output.model_id for output in (outputs.model_outputs if outputs else [])]
    model_id = run.data.tags.get(MODEL_ID_TAG) or (model_ids[-1] if model_ids else None)
    source = f"models:/{model_id}" if model_id else f"{run.info.artifact_uri}/{MODEL_ARTIFACT}"
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in (ErrorCode.Name(RESOURCE_ALREADY_EXISTS), "ALREADY_EXISTS"):  # a new version, then
            raise
    extra = {"model_id": model_id} if model_id else {}
    version = client.create_model_version(name, source, run_id=run_id, tags=tags, **extra)
    return f"models:/{name}/{version.version}"


class _PickleIsIntended(logging.Filter):
    """MLflow warns on every pickled PyTorch model and recommends ``serialization_format="pt2"``. The refit's
    model is pickled on purpose: torch.export cannot trace a LightningModule that holds torchmetrics objects.
    Loading it unpickles, which runs code from the store: load models from stores you trust (README)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Saving pytorch model by Pickle" not in record.getMessage()


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
        from trainlab.training.progress import EpochLines

        return [self.keep, EpochLines(label="refit")]  # its epochs show as lines among the study's

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
    pytorch_logger = logging.getLogger("mlflow.pytorch")
    if not any(isinstance(f, _PickleIsIntended) for f in pytorch_logger.filters):
        pytorch_logger.addFilter(_PickleIsIntended())
    mlflow.set_tracking_uri(tracking_uri)  # MLflow's model logging works through its fluent, active-run API
    with mlflow.start_run(run_id=run_id):
        # Explicit requirements: inferring them loads the model in a subprocess, slower than the refit.
        requirements = [f"torch=={torch.__version__.split('+')[0]}", f"lightning=={lightning.__version__}", f"torchmetrics=={torchmetrics.__version__}"]
        model = model.cpu().eval()
        # pt2 (torch.export) loads without unpickling code; a module torch.export cannot trace is pickled,
        # and the run says so and why (loading a pickle runs whatever it names: load only models you trust).
        try:
            info = mlflow.pytorch.log_model(model, name=MODEL_ARTIFACT, input_example=example, pip_requirements=requirements, serialization_format="pt2")
            form = "pt2"
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            info = mlflow.pytorch.log_model(model, name=MODEL_ARTIFACT, input_example=example, pip_requirements=requirements, serialization_format="pickle")
            form = f"pickle: torch.export could not trace the module ({type(exc).__name__}: {reason})"
        mlflow.set_tag(MODEL_FORMAT_TAG, form)
        # A failed pt2 attempt leaves an empty logged model of its own on the run: register_model takes this one.
        if getattr(info, "model_id", None):
            mlflow.set_tag(MODEL_ID_TAG, info.model_id)


def refit_config(study, spec: StudySpec, tracking_uri: str, trial=None):
    """The best trial's (or ``trial``'s) recorded config, set to train on train+val for the epochs the trial needed."""
    from trainlab.config import resolve_run_config
    from trainlab.config.experiment import get_dotted, set_dotted
    from trainlab.reproduce.recorded import recorded_config
    from trainlab.tracking.store import tracking_client

    best = trial or study.best_trial
    client = tracking_client(tracking_uri)
    document = recorded_config(client, best.user_attrs[MLFLOW_RUN_ATTR])
    # Multi-objective trials report no intermediate values (Optuna takes none): their run's curve says it.
    steps = best.intermediate_values or _curve(client, best.user_attrs[MLFLOW_RUN_ATTR], spec.metric)
    best_epoch = best_by_direction(sorted(steps), spec.direction, key=steps.get) if steps else document["trainer"].get("max_epochs", 1) - 1
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


def _curve(client, run_id: str, metric: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, metric)}


REFIT_TAGS = {"trainlab.kind": "refit"}


def refit_best(study, spec: StudySpec, tracking_uri: str, parent_run_id: str, pick=None, slurm=None):
    """Returns the refit's ``RunResult``. With a ``pick`` rule the trial is the Pareto trial it chooses
    (:func:`trainlab.studies.pareto.choose`). ``slurm`` (the study's SlurmSettings, ``--launcher slurm``):
    the refit is one SLURM job, shaped like a trial's."""
    from trainlab.studies.pareto import choose, pareto_candidates
    from trainlab.training.launch import launch

    best = choose(pick, pareto_candidates(study, spec)).ref if pick is not None else study.best_trial
    tags = {**REFIT_TAGS, "trainlab.study": spec.name, "trainlab.refit_of": best.user_attrs[MLFLOW_RUN_ATTR], "trainlab.trial": str(best.number)}
    if pick is not None:
        print(f"refit: --pick {pick.text!r} chose trial {best.number}")
        tags["trainlab.pick"] = pick.text
    config = refit_config(study, spec, tracking_uri, best)
    if slurm is not None:
        from trainlab.slurm.train_job import checked_job

        slurm = checked_job(slurm, config, tags, devices_if_auto=1)
    return launch(config, tracking_uri, parent_run_id=parent_run_id, tags=tags, role=RefitRole(tracking_uri), slurm=slurm)
