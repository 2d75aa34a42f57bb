"""Where diagnostics write: the run's MLflow client on rank 0, or nowhere (other ranks, runs without MLflow)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

# MLflow refuses tag values longer than this.
_TAG_LIMIT = 5000


def mlflow_run(trainer) -> tuple[Any, str] | None:
    """``(MlflowClient, run_id)`` on rank 0 when the trainer logs to MLflow; ``None`` elsewhere."""
    from lightning.pytorch.loggers import MLFlowLogger

    logger = trainer.logger
    if not trainer.is_global_zero or not isinstance(logger, MLFlowLogger) or logger.run_id is None:
        return None
    return logger.experiment, logger.run_id


def log_figure(trainer, figure, artifact_file: str) -> None:
    """Write ``figure`` as an artifact (rank 0 only). Figures from :func:`new_figure` need no closing."""
    target = mlflow_run(trainer)
    if target is not None:
        client, run_id = target
        client.log_figure(run_id, figure, artifact_file)


def set_tags(trainer, tags: Mapping[str, Any]) -> None:
    """Set tags in one request."""
    from mlflow.entities import RunTag

    target = mlflow_run(trainer)
    if target is None or not tags:
        return
    client, run_id = target
    client.log_batch(run_id, tags=[RunTag(key, str(value)[:_TAG_LIMIT]) for key, value in tags.items()])


def append_note(trainer, paragraph: str) -> None:
    """Add a paragraph to the run's description (the MLflow note), keeping what is already there."""
    target = mlflow_run(trainer)
    if target is None:
        return
    client, run_id = target
    current = client.get_run(run_id).data.tags.get(MLFLOW_RUN_NOTE, "")
    note = f"{current.rstrip()}\n\n{paragraph}" if current.strip() else paragraph
    client.set_tag(run_id, MLFLOW_RUN_NOTE, note[:_TAG_LIMIT])


def log_epoch_metrics(trainer, metrics: Mapping[str, float]) -> None:
    """Hand metrics to the run's logger for the current epoch: they go out in that epoch's single batch."""
    if trainer.is_global_zero and trainer.logger is not None and metrics:
        trainer.logger.log_metrics(dict(metrics), step=trainer.current_epoch)


def new_figure(**kwargs):
    """A matplotlib ``Figure`` outside pyplot: no backend switch, no global figure list to close it from.

    Saving it as PNG renders with Agg, so training machines need no display. Figures whose content has a
    known shape set their margins with ``subplots_adjust``: ``tight_layout`` draws the figure once more
    to measure it, about a third of a small figure's cost (measured on the learning-curves figure).
    """
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def margins(figure, *, left: float, right: float, bottom: float, top: float, **spacing: float) -> None:
    """Fixed margins in inches (what ``tight_layout`` would measure, for content of a known shape)."""
    width, height = figure.get_size_inches()
    figure.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height, **spacing)


@contextmanager
def second_to(exception: BaseException) -> Iterator[None]:
    """While a run is already ending on ``exception``, a diagnostic's own error only warns: the first error is the reason."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_warn

    try:
        yield
    except Exception as own:
        from trainlab.tracking.store_lost import is_store_unavailable

        if is_store_unavailable(own):
            return  # the store is gone: trainlab says so once, in one line, when the run ends
        rank_zero_warn(f"diagnostics could not report after {type(exception).__name__}: {type(own).__name__}: {own}")
