"""Recording a run in MLflow (rank 0 only): create it, log what went in, log what came out.

:func:`~trainlab.training.fit_run.fit_run` calls these in order: :func:`create_record` before training,
:func:`record_inputs` (params, config, model summary, environment, data fingerprint), then after the test
:func:`record_outputs` (best-epoch metrics, learning curves, best weights).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from trainlab.config import RunConfig
from trainlab.contract import data_fingerprint
from trainlab.tracking.run_record import RunRecord, flatten
from trainlab.training.prepare import PreparedRun


def create_record(config: RunConfig, uri: str, parent_run_id: str | None, tags: Mapping[str, str] | None) -> RunRecord:
    import trainlab

    tracking = config.tracking
    all_tags = {"trainlab.version": trainlab.__version__, **(tracking.get("tags") or {}), **(tags or {})}
    record = RunRecord.create(
        uri,
        experiment=tracking["experiment"],
        run_name=tracking.get("run_name"),
        tags=all_tags,
        parent_run_id=parent_run_id,
        description=tracking.get("description"),
        owned=True,
    )
    if tracking.get("system_metrics"):
        record.log_system_metrics()
    return record


def attach_logger(trainer, record: RunRecord):
    from trainlab.tracking.logger import EpochMLFlowLogger

    logger = EpochMLFlowLogger(run_id=record.run_id, tracking_uri=record.tracking_uri, experiment_name=record.experiment_name, experiment_id=record.experiment_id)
    logger.follow_epochs_of(lambda: trainer.current_epoch)
    trainer.logger = logger
    return logger


def keep_checkpoints_with_the_run(record: RunRecord, prepared: PreparedRun, temporary_folder: str) -> Path | None:
    """Point the run's own checkpoints (best weights and the resume checkpoint) at the run's checkpoint folder,
    which outlives the process, and record where it is (tag ``trainlab.checkpoints``). A checkpoint the user
    configured with a folder of its own stays there."""
    from trainlab.training.resume import CHECKPOINTS_TAG, ResumeCheckpoint, run_checkpoint_folder

    folder = run_checkpoint_folder(record.tracking_uri, record.run_id)
    ours = [cb for cb in prepared.trainer.callbacks if isinstance(cb, ResumeCheckpoint) or (cb is prepared.checkpoint and cb.dirpath == os.path.realpath(temporary_folder))]
    if not any(isinstance(cb, ResumeCheckpoint) for cb in ours):
        return None  # checkpointing is off
    folder.mkdir(parents=True, exist_ok=True)
    for callback in ours:
        callback.dirpath = str(folder)
    record.set_tags({CHECKPOINTS_TAG: str(folder)})
    return folder


def record_inputs(record: RunRecord, prepared: PreparedRun) -> None:
    from lightning.pytorch.utilities.model_summary import ModelSummary

    import hashlib

    from trainlab.reproduce.recorded import CONFIG_SHA256_TAG
    from trainlab.secrets import mask_text
    from trainlab.tracking.context import log_dataset_input, numeric_param_metrics
    from trainlab.tracking.environment import capture_environment
    from trainlab.tracking.user_code import add_user_code
    from trainlab.tracking.parameters import parameter_table

    config, model, datamodule = prepared.config, prepared.model, prepared.datamodule
    summary = ModelSummary(model, max_depth=-1)
    params = {key: value for key, value in flatten(config.document).items() if not key.startswith("tracking.")}
    params.update({"model.params_total": summary.total_parameters, "model.params_trainable": summary.trainable_parameters})
    record.log_params(params)
    record.log_metrics(numeric_param_metrics(params), step=0)  # MLflow params are strings: metrics can be searched by value
    config_text = mask_text(config.to_yaml())  # as stored (the client masks what it writes)
    record.log_text(config_text, "config.yaml")
    record.log_text(str(summary), "model_summary.txt")
    record.log_text(parameter_table(model), "model/parameters.csv")
    environment, diff = capture_environment(prepared.trainer, seed=config.seed, code_of=(model, datamodule))
    code = add_user_code(environment, model, datamodule)
    record.log_json(environment, "environment.json")
    if diff:
        record.log_text(diff, "code.diff")
    keep_user_code(record, code)
    reproducibility = environment["reproducibility"]
    tags = {
        "trainlab.reproducibility": reproducibility["label"],
        "trainlab.monitor": prepared.monitor.describe(),
        # An artifact can be replaced after the run; this tag cannot be taken for it: reproduce checks it.
        CONFIG_SHA256_TAG: hashlib.sha256(config_text.encode()).hexdigest(),
        "trainlab.test": f"skipped: {prepared.test_skipped}" if prepared.test_skipped else
        ("run on the kept checkpoint" if prepared.checkpoint else "run on the final weights"),
    }
    if reproducibility["reasons"]:
        tags["trainlab.reproducibility.reasons"] = "; ".join(reproducibility["reasons"])
    if environment["git"].get("commit"):
        tags["mlflow.source.git.commit"] = environment["git"]["commit"]
    record.set_tags(tags)
    fingerprint = data_fingerprint(datamodule)
    if fingerprint is not None:
        record.log_json(fingerprint, "data_fingerprint.json")
        log_dataset_input(record.client, record.run_id, type(datamodule).__name__, fingerprint, source=config.section("data")["class_path"])


def keep_user_code(record: RunRecord, code) -> None:
    """The user's source files as run artifacts under ``code/``, in one upload."""
    import shutil
    import tempfile

    if not code.files:
        return
    with tempfile.TemporaryDirectory(prefix="trainlab-code-") as folder:
        for name, path in code.files.items():
            target = Path(folder) / code.artifact_folder(name) / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        record.client.log_artifacts(record.run_id, folder)


def record_outputs(record: RunRecord, logger, prepared: PreparedRun, metrics: dict[str, float]) -> None:
    import torch

    from trainlab.diagnostics.spec import DiagnosticsSpec
    from trainlab.training.checkpoints import load_own_checkpoint
    from trainlab.tracking.plots import curve_panels, learning_curves_figure

    checkpoint = prepared.checkpoint
    extra = {key: value for key, value in metrics.items() if key.startswith("best/")}
    record.log_metrics(extra, step=0)
    history = dict(logger.history)
    if DiagnosticsSpec.from_document(prepared.config.section("diagnostics")).pictures:
        panels = curve_panels(history, prepared.monitor.metric)
        record.log_figure(learning_curves_figure(history, panels=panels), "plots/learning_curves.png")
    if checkpoint is not None and checkpoint.best_model_path:
        # Weights only, as plain tensors and numbers: loadable with torch.load(..., weights_only=True).
        saved = load_own_checkpoint(checkpoint.best_model_path)
        weights = {
            "state_dict": saved["state_dict"],
            "epoch": int(saved.get("epoch", -1)),
            "monitor": checkpoint.monitor,
            "score": float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None,
        }
        path = os.path.join(os.path.dirname(checkpoint.best_model_path), "best.pt")
        torch.save(weights, path)
        record.log_file(path, "checkpoints")


def save_what_we_can(record: RunRecord, logger) -> None:
    """On failure keep every metric already computed; a second error here must not hide the first."""
    if logger is None:
        return
    try:
        logger.flush()
    except Exception:
        pass
