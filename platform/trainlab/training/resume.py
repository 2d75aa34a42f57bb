"""Resumable runs: a full checkpoint at the start of each epoch, in a folder that outlives the process.

Every run keeps ``<checkpoints>/<run_id>/resume.ckpt`` (model, optimizer, schedulers, Lightning's loops,
callbacks' state, RNG states: the state at the start of the next epoch, one file, overwritten) beside its
best weights ``best.ckpt``; the folder is recorded on the run (tag ``trainlab.checkpoints``) and removed
when the run finishes. ``<checkpoints>`` is ``checkpoints/`` beside a SQLite store (else in the working
directory), or ``$TRAINLAB_CHECKPOINTS``.

Why the start of an epoch and not its end: by then everything of the epoch before is done and written
(its metrics, the epoch's scheduler step), the RNG state is exactly what the next epoch draws from, and
Lightning restarts such a checkpoint as "restarted on epoch start". A run resumed from it continues the
same MLflow run at the next epoch and, on the CPU with a seed, ends bit-identical to the run that was never
interrupted (tests/test_resume.py).

Cadence: every epoch, at most one write per ``$TRAINLAB_CHECKPOINT_EVERY_S`` seconds (default 10), so that a
small model's 40 ms epochs do not spend their time writing files; 0 writes every epoch.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

from trainlab.errors import ConfigError

CHECKPOINTS_TAG = "trainlab.checkpoints"
RESUMED_TAG = "trainlab.resumed"  # "2 times, last from epoch 7", and ", max_epochs 5 → 8" when that resume raised it
# The trainer.max_epochs a resume raised the run to. MLflow params cannot change and config.yaml is hash-checked
# by trainlab reproduce, so both keep the value the run started with; this tag says what it trains to.
MAX_EPOCHS_TAG = "trainlab.max_epochs"
RESUME_FILE = "resume.ckpt"
DEFAULT_EVERY_S = 10.0


@dataclass(frozen=True)
class ResumeFrom:
    """The run to continue and the checkpoint to continue it from (plain values: they cross into a process group)."""

    run_id: str
    checkpoint: str
    epoch: int  # the epoch the resumed run starts with
    times: int  # how many times the run has been resumed, this one included
    max_epochs: int | None = None  # set when this resume raises trainer.max_epochs: the new value ...
    max_epochs_before: int | None = None  # ... and the one the run trained to until now

    def tags(self) -> dict[str, str]:
        """What the run records about this resume."""
        resumed = f"{self.times} times, last from epoch {self.epoch}"
        if self.max_epochs is None:
            return {RESUMED_TAG: resumed}
        return {RESUMED_TAG: f"{resumed}, max_epochs {self.max_epochs_before} → {self.max_epochs}", MAX_EPOCHS_TAG: str(self.max_epochs)}


def checkpoints_root(tracking_uri: str) -> Path:
    from trainlab.tracking.store import sqlite_path

    if os.environ.get("TRAINLAB_CHECKPOINTS"):
        return Path(os.environ["TRAINLAB_CHECKPOINTS"]).absolute()
    store = sqlite_path(tracking_uri)
    base = Path(store).parent if store else Path.cwd()
    return (base / "checkpoints").absolute()


def run_checkpoint_folder(tracking_uri: str, run_id: str) -> Path:
    return checkpoints_root(tracking_uri) / run_id


class ResumeCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint writing the full training state at the start of each epoch (see the module
    docstring), with the RNG states Lightning's checkpoints leave out (dropout draws from them)."""

    def __init__(self, every_s: float | None = None) -> None:
        super().__init__(filename=RESUME_FILE.removesuffix(".ckpt"), monitor=None, save_top_k=1, save_weights_only=False, enable_version_counter=False)
        self.every_s = float(os.environ.get("TRAINLAB_CHECKPOINT_EVERY_S", DEFAULT_EVERY_S)) if every_s is None else every_s
        self._last_write = time.monotonic()
        self._rng_to_restore: dict[str, Any] | None = None
        self._resumed = False

    # The parent saves at epoch or validation end; this one saves only at epoch start.
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        return None

    def on_validation_end(self, trainer, pl_module) -> None:
        return None

    def on_fit_start(self, trainer, pl_module) -> None:
        super().on_fit_start(trainer, pl_module)
        # The RNG states go back as late as a callback hook can, yet before the training DataLoader's iterator is
        # made: a resumed run makes it before its first epoch's hooks (Lightning's FitLoop.setup_data), and a
        # torch DataLoader draws its shuffle seed and its workers' seeds from the global RNG right there. The
        # uninterrupted run draws them from the state saved at its epoch's start; the sanity check between
        # runs inside Lightning's isolate_rng.
        if self._rng_to_restore is not None:
            from lightning.fabric.utilities.seed import _set_rng_states  # Lightning's own RNG capture, as its launchers use

            _set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None
            self._resumed = True

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self._resumed:
            self._resumed = False
            # Lightning treats the first epoch after a restart as unfinished work: it would skip that epoch's
            # scheduler step and epoch-end logging. Saved at an epoch's start, it is a whole new epoch.
            trainer.fit_loop.restarting = False
            self._last_write = time.monotonic()
            return
        due = trainer.current_epoch > 0 and time.monotonic() - self._last_write >= self.every_s
        if not trainer.strategy.broadcast(due):  # rank 0's clock decides: every rank takes part in a save
            return
        logger = trainer.logger
        if logger is not None and hasattr(logger, "flush"):
            logger.flush()  # what the checkpoint says is done is in the store: a resume neither repeats nor skips an epoch
        self._save_checkpoint(trainer, self.format_checkpoint_name({}))
        self._last_write = time.monotonic()

    def state_dict(self) -> dict[str, Any]:
        from lightning.fabric.utilities.seed import _collect_rng_states

        return {**super().state_dict(), "rng_states": _collect_rng_states(include_cuda=True)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self._rng_to_restore = state_dict.pop("rng_states", None)
        super().load_state_dict(state_dict)


def resume_point(tracking_uri: str, run_id: str) -> ResumeFrom:
    """Check that ``run_id`` can be resumed here; ConfigError (exit 2, nothing changed) when it cannot."""
    import torch

    from trainlab.tracking.store import tracking_client

    client = tracking_client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except Exception:
        raise ConfigError("--resume", run_id, f"the id of a run in {tracking_uri} (trainlab runs lists them)") from None
    if run.info.status == "FINISHED":
        raise ConfigError("--resume", run_id, "a run that did not finish (this one FINISHED; train a new run to train more)")
    if run.info.status == "RUNNING":  # the store's check has just reaped runs whose process is gone: this one lives
        from trainlab.tracking.reaper import HOST_TAG, PID_TAG

        owner = f"pid {run.data.tags.get(PID_TAG, '?')} on {run.data.tags.get(HOST_TAG, '?')}"
        raise ConfigError("--resume", run_id, f"a run that is not running (this one is RUNNING, trained by {owner})")
    folder = Path(run.data.tags.get(CHECKPOINTS_TAG) or run_checkpoint_folder(tracking_uri, run_id))
    checkpoint = folder / RESUME_FILE
    if not checkpoint.is_file():
        raise ConfigError(
            "--resume", run_id, "a run with a resumable checkpoint",
            hint=f"{checkpoint} does not exist: the run ended before its second epoch began, or its folder was removed",
        )
    # weights_only=False: Lightning's checkpoint holds the module's hyper-parameters, whose jsonargparse types
    # torch's safe loader refuses; the file is the run's own, written by this code.
    # jsonargparse creates its restricted number types (trainlab.types) at import: the hyper-parameters need them.
    import trainlab.types  # noqa: F401

    epoch = int(torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)["epoch"])  # mmap: tensors stay on disk
    times = int((run.data.tags.get(RESUMED_TAG) or "0").split()[0]) + 1
    return ResumeFrom(run_id, str(checkpoint), epoch, times)


def with_effective_max_epochs(document: dict[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    """A run's recorded config with the trainer.max_epochs a resume raised it to (tag ``trainlab.max_epochs``):
    what a further resume, and ``trainlab reproduce``, train the run to."""
    if MAX_EPOCHS_TAG not in tags:
        return document
    trainer = dict(document.get("trainer") or {})
    trainer["max_epochs"] = int(tags[MAX_EPOCHS_TAG])
    return {**document, "trainer": trainer}


def remove_checkpoints(folder: str | Path | None) -> None:
    """A finished run keeps its best weights as an artifact; its resume folder is no longer needed."""
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
