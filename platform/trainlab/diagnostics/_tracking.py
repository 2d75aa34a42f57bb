"""Where diagnostics write: the run's MLflow client on rank 0, or nowhere (other ranks, runs without MLflow)."""

from __future__ import annotations

import re
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


def write_note(trainer, key: str, paragraph: str) -> None:
    """Put a diagnostic's paragraph in the run's description (the MLflow note), replacing the one it wrote
    before under the same ``key`` and keeping everything else there (the user's text, other diagnostics')."""
    target = mlflow_run(trainer)
    if target is None:
        return
    client, run_id = target
    current = client.get_run(run_id).data.tags.get(MLFLOW_RUN_NOTE, "")
    marked = f"{_START.format(key)}\n{paragraph}\n{_END.format(key)}"
    if _paragraph(key).search(current):
        note = _paragraph(key).sub(lambda _: marked, current)
    else:
        note = f"{current.rstrip()}\n\n{marked}" if current.strip() else marked
    client.set_tag(run_id, MLFLOW_RUN_NOTE, note[:_TAG_LIMIT])


def forget_diagnoses(client, run_id: str) -> None:
    """Remove the diagnostics' verdict tags and paragraphs from a run about to be resumed.

    The partial run judged its epochs so far when it stopped (SIGTERM, an exception); the resumed run judges
    all of them at its end. A verdict only the partial run had (a warning) would otherwise outlive it.
    """
    from trainlab.diagnostics.gradient_flow import LAYERS_TAG, VERDICT_TAG
    from trainlab.diagnostics.loss_trend import WARNING_TAG
    from trainlab.diagnostics.non_finite import NON_FINITE_TAGS
    from trainlab.diagnostics.overfitting import OVERFITTING_TAG

    tags = client.get_run(run_id).data.tags
    for key in (VERDICT_TAG, LAYERS_TAG, WARNING_TAG, OVERFITTING_TAG, *NON_FINITE_TAGS):
        if key in tags:
            client.delete_tag(run_id, key)
    current = tags.get(MLFLOW_RUN_NOTE, "")
    note = re.sub(r"\n*" + _paragraph(r"[\w.]+").pattern, "", current).strip()
    if note == current:
        return
    if note:
        client.set_tag(run_id, MLFLOW_RUN_NOTE, note)
    else:
        client.delete_tag(run_id, MLFLOW_RUN_NOTE)


# A diagnostic's paragraph sits between these markers, so that it can be found and rewritten. HTML comments:
# MLflow renders the description as Markdown and shows neither.
_START, _END = "<!-- trainlab.diagnostics {} -->", "<!-- end trainlab.diagnostics {} -->"


def _paragraph(key: str) -> re.Pattern:
    start, end = (re.escape(marker.format("KEY")).replace("KEY", key) for marker in (_START, _END))
    return re.compile(f"{start}\n.*?\n{end}", re.DOTALL)


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
