"""Setting a run up: seed, data, model, trainer and checkpoint, from a resolved run config.

:func:`prepare_run` is the one set-up: :func:`~trainlab.training.fit_run.fit_run` trains what it returns,
and ``trainlab reproduce`` audits it (devices, world size, determinism) before training anything.
Everything here runs before the MLflow run exists, so bad values surface as ConfigError and leave no trace.

Example::

    prepared = prepare_run(config)
    prepared.trainer.fit(prepared.model, datamodule=prepared.datamodule)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trainlab.config import RunConfig
from trainlab.contract import Monitor, monitored_metric, why_test_is_skipped
from trainlab.config.parse_errors import trainer_error
from trainlab.errors import ConfigError
from trainlab.training import build


@dataclass(frozen=True)
class PreparedRun:
    """What a run trains with. ``config`` is a new config with the datamodule's facts filled in (the one to
    record); ``checkpoint`` is the callback that keeps the best weights (the last epoch's when nothing is
    monitored), or None with checkpointing off; ``monitor`` is the metric the run watches;
    ``test_skipped`` says why the run has no test, or is None."""

    config: RunConfig
    datamodule: Any
    model: Any
    trainer: Any
    checkpoint: Any | None
    monitor: Monitor
    test_skipped: str | None


def prepare_run(config: RunConfig, *, callbacks: Sequence[Any] = (), checkpoint_dir: str | None = None) -> PreparedRun:
    """Seed, load the data, fill its facts into the model's arguments, build the model and the trainer.

    ``callbacks`` join the config's own and the diagnostics'; ``checkpoint_dir`` (rank 0's temporary
    folder) is where the best checkpoint goes, and also says that this process records the run (it then
    gets a LearningRateMonitor).
    """
    import lightning as L

    if config.seed is not None:
        L.seed_everything(config.seed, workers=True, verbose=False)
    datamodule = build.build_datamodule(config)
    config = build.with_data_facts(config, datamodule)
    model = build.build_model(config)
    monitor = monitored_metric(model, config)
    test_skipped = why_test_is_skipped(model, datamodule, config)
    trainer, checkpoint = _build_trainer(config, model, monitor, list(callbacks), checkpoint_dir, tested=test_skipped is None)
    return PreparedRun(config, datamodule, model, trainer, checkpoint, monitor, test_skipped)


def _build_trainer(config: RunConfig, model, monitor: Monitor, extra_callbacks: list, checkpoint_dir: str | None, tested: bool = True):
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

    from trainlab.diagnostics import diagnostic_callbacks
    from trainlab.training.resume import ResumeCheckpoint
    from trainlab.training.progress import with_live_progress

    arguments = build.trainer_arguments(config)
    callbacks = build.build_user_callbacks(config) + diagnostic_callbacks(config.section("diagnostics"), model, tested=tested) + extra_callbacks
    if config.section("measure"):
        from trainlab.training.measurements import ModelMeasurements

        callbacks.append(ModelMeasurements(config.section("measure")))
    checkpoint = None
    if arguments.get("enable_checkpointing") is not False:  # None (a LightningCLI dump): Lightning's default, on
        checkpoint = next((cb for cb in callbacks if isinstance(cb, ModelCheckpoint)), None)
        if checkpoint is None:
            # monitor None: Lightning's ModelCheckpoint keeps the last epoch, which no metric name can fail.
            checkpoint = ModelCheckpoint(
                dirpath=checkpoint_dir,  # rank 0's path is broadcast to the other ranks by Lightning
                monitor=monitor.metric,
                mode=monitor.mode,
                save_top_k=1,
                save_weights_only=True,
                filename="best",
                enable_version_counter=False,
            )
            callbacks.append(checkpoint)
        # After the best-weights checkpoint: Lightning's "best" and trainer.checkpoint_callback mean the first.
        callbacks.append(ResumeCheckpoint())
    if checkpoint_dir is not None:
        callbacks.append(LearningRateMonitor(logging_interval="epoch", log_momentum=True))
    callbacks, arguments["enable_progress_bar"] = with_live_progress(callbacks, arguments.get("enable_progress_bar"), monitor)
    try:
        root = arguments.pop("default_root_dir", None)
        trainer = L.Trainer(**arguments, callbacks=callbacks, logger=False, default_root_dir=checkpoint_dir or root or os.getcwd())
    except ConfigError:
        raise
    except Exception as exc:  # Lightning's MisconfigurationException and friends: bad trainer settings
        raise trainer_error(exc, arguments) from None
    return trainer, checkpoint
