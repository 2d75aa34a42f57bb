"""fit → test → record: the single function behind `trainlab train`, study trials and reproductions."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainlab.config import RunConfig
from trainlab.errors import ConfigError
from trainlab.tracking.run_record import RunRecord, flatten
from trainlab.tracking.store import resolve_tracking_uri
from trainlab.training import build
from trainlab.training.quiet import quiet_lightning


@dataclass
class RunResult:
    """What a finished (or ended) run left behind. ``run_id`` is None on ranks other than 0."""

    run_id: str | None
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    reason: str | None = None


class RunEnded(Exception):
    """Raised by fit_run when a run ends KILLED or FAILED; carries the result, chained to the cause."""

    def __init__(self, result: RunResult):
        super().__init__(result.reason or result.status)
        self.result = result


def fit_run(
    config: RunConfig,
    tracking_uri: str | None = None,
    *,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    callbacks: Sequence[Any] = (),
    on_run_created=None,
) -> RunResult:
    """Build model, data and trainer from ``config``; fit; test the best checkpoint; record it all in MLflow.

    Rank 0 alone creates the MLflow run and writes artifacts. The run always ends FINISHED, FAILED (with
    the reason as tag ``trainlab.status_reason``) or KILLED (interrupt, SIGTERM, pruned trial); the
    exception that ended it is re-raised. Bad input raises :class:`ConfigError` before any run exists.

    ``callbacks`` are added to the trainer (a study adds its pruning callback); ``on_run_created(run_id)``
    lets a caller learn the run id as soon as it exists (a study records it on the trial).
    """
    import lightning as L
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    quiet_lightning()
    uri = resolve_tracking_uri(tracking_uri)
    document = config.document
    if document["trainer"].get("deterministic") and "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # cuBLAS needs it for deterministic GEMMs
    if config.seed is not None:
        L.seed_everything(config.seed, workers=True, verbose=False)

    datamodule = build.build_datamodule(config)
    build.fill_model_shapes(config, datamodule)
    model = build.build_model(config)
    is_rank_zero = rank_zero_only.rank == 0
    workdir = tempfile.TemporaryDirectory(prefix="trainlab-run-") if is_rank_zero else None
    trainer, checkpoint = _build_trainer(config, model, list(callbacks), workdir.name if workdir else None)

    try:
        record = _create_record(config, uri, parent_run_id, tags) if is_rank_zero else None
    except Exception as exc:  # nothing was recorded yet: an unreachable or unusable store is bad input
        raise ConfigError("--tracking-uri", uri, "a reachable MLflow tracking store", hint=str(exc).splitlines()[0][:300]) from None
    if record and on_run_created:
        on_run_created(record.run_id)
    logger = None
    try:
        if record:
            logger = _attach_logger(trainer, record)
            _record_inputs(record, config, model, datamodule, trainer)
        trainer.fit(model, datamodule=datamodule)
        # weights_only=False: the checkpoint is this run's own temp file, and jsonargparse-typed hparams
        # (PositiveInt, ...) are not on torch's safe list.
        best = "best" if checkpoint else None
        test_results = trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=False)
        metrics = {key: float(value) for key, value in (test_results[0] if test_results else {}).items()}
        if checkpoint is not None and checkpoint.best_model_score is not None:
            metrics[f"best/{checkpoint.monitor}"] = float(checkpoint.best_model_score)
        if record:
            logger.flush()
            _record_outputs(record, logger, model, checkpoint, metrics)
            record.end("FINISHED")
        _leave_process_group_together(trainer)
        return RunResult(record.run_id if record else None, "FINISHED", metrics, dict(logger.history) if logger else {})
    except BaseException as exc:
        status, reason, end_tags = classify_failure(exc, trainer)
        if record:
            _save_what_we_can(record, logger)
            record.set_tags(end_tags)
            record.end(status, reason)
        result = RunResult(record.run_id if record else None, status, {}, dict(logger.history) if logger else {}, reason)
        if isinstance(exc, SystemExit) and getattr(trainer, "interrupted", False):
            # Lightning answers Ctrl-C/SIGTERM inside fit with sys.exit(1); callers (a study worker that
            # must fail its trial, the CLI's exit 130) need to see the interrupt it was.
            raise KeyboardInterrupt(reason) from exc
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) or type(exc).__name__ == "TrialPruned":
            raise
        raise RunEnded(result) from exc
    finally:
        if workdir:
            workdir.cleanup()


def _leave_process_group_together(trainer) -> None:
    """Ranks wait for rank 0 to finish recording, then close the group: a rank that exits while another is
    still inside a gloo/NCCL call makes that one fail with 'Connection closed by peer'."""
    import torch.distributed as dist

    if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
        trainer.strategy.barrier("trainlab-run-recorded")
        dist.destroy_process_group()


def classify_failure(exc: BaseException, trainer=None) -> tuple[str, str, dict[str, str]]:
    """Map what ended a run to its MLflow status, a reason and extra tags."""
    if type(exc).__name__ == "TrialPruned":
        return "KILLED", f"pruned by Optuna: {exc}".rstrip(": "), {"trainlab.pruned": "true"}
    if isinstance(exc, KeyboardInterrupt) or (isinstance(exc, SystemExit) and getattr(trainer, "interrupted", False)):
        return "KILLED", "interrupted (Ctrl-C or SIGTERM)", {}
    if isinstance(exc, SystemExit):
        return "KILLED", f"process exit ({exc.code})", {}
    return "FAILED", f"{type(exc).__name__}: {exc}", {}


def _build_trainer(config: RunConfig, model, extra_callbacks: list, checkpoint_dir: str | None):
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

    from trainlab.diagnostics import diagnostic_callbacks

    arguments = build.trainer_arguments(config)
    callbacks = build.build_user_callbacks(config) + diagnostic_callbacks(config.document.get("diagnostics"), model) + extra_callbacks
    checkpoint = None
    if arguments.get("enable_checkpointing", True):
        checkpoint = next((cb for cb in callbacks if isinstance(cb, ModelCheckpoint)), None)
        if checkpoint is None:
            checkpoint = ModelCheckpoint(
                dirpath=checkpoint_dir,  # rank 0's path is broadcast to the other ranks by Lightning
                monitor=getattr(model, "monitor", "val/loss"),
                mode=getattr(model, "monitor_mode", "min"),
                save_top_k=1,
                save_weights_only=True,
                filename="best",
                enable_version_counter=False,
            )
            callbacks.append(checkpoint)
    if checkpoint_dir is not None:
        callbacks.append(LearningRateMonitor(logging_interval="epoch", log_momentum=True))
    try:
        trainer = L.Trainer(**arguments, callbacks=callbacks, logger=False, default_root_dir=checkpoint_dir or os.getcwd())
    except ConfigError:
        raise
    except Exception as exc:  # Lightning's MisconfigurationException and friends: bad trainer settings
        raise ConfigError("trainer", expected="settings this machine can run", hint=str(exc).splitlines()[0]) from None
    return trainer, checkpoint


def _create_record(config: RunConfig, uri: str, parent_run_id: str | None, tags: Mapping[str, str] | None) -> RunRecord:
    import trainlab

    tracking = config.tracking
    all_tags = {"trainlab.version": trainlab.__version__, **(tracking.get("tags") or {}), **(tags or {})}
    return RunRecord.create(
        uri,
        experiment=tracking["experiment"],
        run_name=tracking.get("run_name"),
        tags=all_tags,
        parent_run_id=parent_run_id,
        description=tracking.get("description"),
    )


def _attach_logger(trainer, record: RunRecord):
    from trainlab.tracking.logger import EpochMLFlowLogger

    logger = EpochMLFlowLogger(run_id=record.run_id, tracking_uri=record.tracking_uri, experiment_name=record.experiment_name)
    logger.follow_epochs_of(lambda: trainer.current_epoch)
    trainer.logger = logger
    return logger


def _record_inputs(record: RunRecord, config: RunConfig, model, datamodule, trainer) -> None:
    from lightning.pytorch.utilities.model_summary import ModelSummary

    from trainlab.tracking.environment import capture_environment
    from trainlab.tracking.parameters import parameter_table

    params = {key: value for key, value in flatten(config.document).items() if not key.startswith("tracking.")}
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    params.update({"model.params_total": total, "model.params_trainable": trainable})
    record.log_params(params)
    record.log_text(config.to_yaml(), "config.yaml")
    record.log_text(str(ModelSummary(model, max_depth=-1)), "model_summary.txt")
    record.log_text(parameter_table(model), "model/parameters.csv")
    environment, diff = capture_environment(trainer, seed=config.seed, code_of=(model, datamodule))
    record.log_json(environment, "environment.json")
    if diff:
        record.log_text(diff, "code.diff")
    reproducibility = environment["reproducibility"]
    tags = {"trainlab.reproducibility": reproducibility["label"]}
    if reproducibility["reasons"]:
        tags["trainlab.reproducibility.reasons"] = "; ".join(reproducibility["reasons"])
    if environment["git"].get("commit"):
        tags["mlflow.source.git.commit"] = environment["git"]["commit"]
    record.set_tags(tags)
    fingerprint = getattr(datamodule, "fingerprint", None)
    if fingerprint is not None:
        record.log_json(fingerprint(), "data_fingerprint.json")


def _record_outputs(record: RunRecord, logger, model, checkpoint, metrics: dict[str, float]) -> None:
    import torch

    from trainlab.tracking.plots import learning_curves_figure

    extra = {key: value for key, value in metrics.items() if key.startswith("best/")}
    record.log_metrics(extra, step=0)
    main = getattr(model, "monitor", "val/loss").split("/")[-1]
    record.log_figure(learning_curves_figure(logger.history, ("loss", main) if main != "loss" else ("loss",)), "plots/learning_curves.png")
    if checkpoint is not None and checkpoint.best_model_path:
        # Weights only, as plain tensors and numbers: loadable with torch.load(..., weights_only=True).
        saved = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)
        weights = {
            "state_dict": saved["state_dict"],
            "epoch": int(saved.get("epoch", -1)),
            "monitor": checkpoint.monitor,
            "score": float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None,
        }
        path = os.path.join(os.path.dirname(checkpoint.best_model_path), "best.pt")
        torch.save(weights, path)
        record.log_file(path, "checkpoints")


def _save_what_we_can(record: RunRecord, logger) -> None:
    """On failure keep every metric already computed; a second error here must not hide the first."""
    if logger is None:
        return
    try:
        logger.flush()
    except Exception:
        pass
