"""prepare → fit → test → record: the single function that trains a run, in the process it is called in.

Callers go through :func:`~trainlab.training.launch.launch`, which decides whether this process trains
(one process, or a rank started by torchrun or a process group) or a process group of its own does.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainlab.config import RunConfig
from trainlab.diagnostics import forget_diagnoses
from trainlab.errors import ConfigError
from trainlab.tracking.store import resolve_tracking_uri
from trainlab.training.checkpoints import own_checkpoint
from trainlab.training.prepare import prepare_run
from trainlab.training.processes import is_rank_zero
from trainlab.training.quiet import quiet_lightning
from trainlab.tracking.context import PARAM_METRIC_PREFIX
from trainlab.tracking.run_record import RunRecord
from trainlab.training.record import attach_logger, create_record, keep_checkpoints_with_the_run, record_inputs, record_outputs, save_what_we_can
from trainlab.training.resume import ResumeFrom, remove_checkpoints


@dataclass
class RunResult:
    """What a finished (or ended) run left behind. ``run_id`` is None on ranks other than 0."""

    run_id: str | None
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    reason: str | None = None
    test_skipped: str | None = None  # why the run has no test (no test_step, no test data, test: false)


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
    resume: ResumeFrom | None = None,
) -> RunResult:
    """Build model, data and trainer from ``config``; fit; test the best checkpoint; record it all in MLflow.

    Rank 0 alone creates the MLflow run and writes artifacts. The run always ends FINISHED, FAILED (with
    the reason as tag ``trainlab.status_reason``) or KILLED (interrupt, SIGTERM, pruned trial); the
    exception that ended it is re-raised. Bad input raises :class:`ConfigError` before any run exists.

    ``callbacks`` are added to the trainer (a study adds its pruning callback); ``on_run_created(run_id)``
    lets a caller learn the run id as soon as it exists (a study records it on the trial). ``resume``
    continues an unfinished run from its checkpoint, in the same MLflow run (see :mod:`trainlab.training.resume`).
    """
    quiet_lightning()
    uri = resolve_tracking_uri(tracking_uri)
    records = is_rank_zero()
    workdir = tempfile.TemporaryDirectory(prefix="trainlab-run-") if records else None
    try:
        # 1. prepare
        prepared = prepare_run(config, callbacks=callbacks, checkpoint_dir=workdir.name if workdir else None)
        trainer, model, datamodule, checkpoint = prepared.trainer, prepared.model, prepared.datamodule, prepared.checkpoint
        try:
            if not records:
                record = None
            elif resume:
                record = RunRecord.reopen(uri, resume.run_id)
            else:
                record = create_record(prepared.config, uri, parent_run_id, tags)
        except Exception as exc:  # nothing was recorded yet: an unreachable or unusable store is bad input
            raise ConfigError("--tracking-uri", uri, "a reachable MLflow tracking store", hint=str(exc).splitlines()[0][:300]) from None
        if record and on_run_created:
            on_run_created(record.run_id)
        logger = None
        checkpoints = None
        try:
            if record:
                checkpoints = keep_checkpoints_with_the_run(record, prepared, workdir.name)
                logger = attach_logger(trainer, record)
                if resume:
                    logger.continue_history()
                    record.set_tags(resume.tags())
                    forget_diagnoses(record.client, record.run_id)  # judged again, on all epochs, at the end
                    if resume.max_epochs is not None:  # the param's searchable copy says what the run now trains to
                        record.log_metrics({f"{PARAM_METRIC_PREFIX}trainer.max_epochs": resume.max_epochs}, step=0)
                else:
                    record_inputs(record, prepared)
            # 2. fit. weights_only=False for a resume: see trainlab.training.resume.resume_point.
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume.checkpoint if resume else None, weights_only=False if resume else None)
            # 3. test the kept checkpoint, loaded without unpickling code (see training/checkpoints.py).
            test_results = []
            if prepared.test_skipped is None:
                best = "best" if checkpoint else None
                with own_checkpoint(checkpoint.best_model_path if checkpoint else None):
                    test_results = trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)
            metrics = {key: float(value) for key, value in (test_results[0] if test_results else {}).items()}
            if checkpoint is not None and checkpoint.monitor and checkpoint.best_model_score is not None:
                metrics[f"best/{checkpoint.monitor}"] = float(checkpoint.best_model_score)
            # 4. record
            if record:
                logger.flush()
                record_outputs(record, logger, prepared, metrics)
                record.end("FINISHED")
                remove_checkpoints(checkpoints)  # its best weights are an artifact now
            _leave_process_group_together(trainer)
            history = dict(logger.history) if logger else {}
            return RunResult(record.run_id if record else None, "FINISHED", metrics, history, test_skipped=prepared.test_skipped)
        except BaseException as exc:
            from trainlab.tracking.store_lost import give_up, is_store_unavailable, keep_waiting, store_lost

            if record and is_store_unavailable(exc):
                # Nothing more can be written; the checkpoints leave the temporary folder for the user.
                give_up()
                record.abandon()
                lost = store_lost(uri, record.run_id, exc, checkpoints)
                keep_waiting()
                raise lost from exc
            status, reason, end_tags = classify_failure(exc, trainer)
            if record:
                save_what_we_can(record, logger)
                record.set_tags(end_tags)
                record.end(status, reason)
                if is_pruned(exc):
                    remove_checkpoints(checkpoints)  # a pruned trial is final: nothing will resume it
            result = RunResult(record.run_id if record else None, status, {}, dict(logger.history) if logger else {}, reason)
            if isinstance(exc, SystemExit) and getattr(trainer, "interrupted", False):
                # Lightning answers Ctrl-C/SIGTERM inside fit with sys.exit(1); callers (a study worker that
                # must fail its trial, the CLI's exit 130) need to see the interrupt it was.
                raise KeyboardInterrupt(reason) from exc
            if isinstance(exc, (KeyboardInterrupt, SystemExit)) or is_pruned(exc):
                raise
            raise RunEnded(result) from exc
    finally:
        if workdir:
            workdir.cleanup()


def is_pruned(exc: BaseException) -> bool:
    """Optuna's TrialPruned, recognised without importing Optuna into every run."""
    return type(exc).__name__ == "TrialPruned"


def _leave_process_group_together(trainer) -> None:
    """Ranks wait for rank 0 to finish recording, then close the group: a rank that exits while another is
    still inside a gloo/NCCL call makes that one fail with 'Connection closed by peer'."""
    import torch.distributed as dist

    if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
        trainer.strategy.barrier("trainlab-run-recorded")
        dist.destroy_process_group()


def classify_failure(exc: BaseException, trainer=None) -> tuple[str, str, dict[str, str]]:
    """Map what ended a run to its MLflow status, a reason and extra tags."""
    if is_pruned(exc):
        return "KILLED", f"pruned by Optuna: {exc}".rstrip(": "), {"trainlab.pruned": "true"}
    if isinstance(exc, KeyboardInterrupt) or (isinstance(exc, SystemExit) and getattr(trainer, "interrupted", False)):
        from trainlab.training.processes import interrupt_reason

        return "KILLED", interrupt_reason(), {}
    if isinstance(exc, SystemExit):
        return "KILLED", f"process exit ({exc.code})", {}
    return "FAILED", f"{type(exc).__name__}: {exc}", {}
