"""Lightning's MLFlowLogger, writing epoch metrics in batches (at most one write a second), the epoch as step.

Writes are synchronous: an epoch's metrics are in the store when the next epoch starts, so a process that
dies hard (kill -9, the OOM killer, os._exit) keeps every epoch it wrote. MLflow's asynchronous logging
was measured to save 10-20 ms per write on sqlite, but loses the writes still queued at such a death.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from typing import Any, Callable, Mapping

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

_LR_MONITOR_NAME = re.compile(r"^lr-[^/]+?(-momentum)?(/pg\d+)?$")
# A write (log_batch) takes 10-50 ms on sqlite: more than a whole epoch of a small model (benchmarks/overhead.py).
# So finished epochs are held until a second has passed since the last write; longer epochs go out one by one.
MIN_SECONDS_BETWEEN_WRITES = 1.0
_BATCH_LIMIT = 1000  # MLflow takes at most 1000 metrics per log_batch


class EpochMLFlowLogger(MLFlowLogger):
    """Buffers every metric of an epoch and sends finished epochs in one ``log_batch`` when the epoch changes
    (at most once every ``MIN_SECONDS_BETWEEN_WRITES``) and on :meth:`flush`.

    Lightning's MLFlowLogger sends one request per ``log_metrics`` call and uses the global step; trainlab
    logs epoch-level curves, so the epoch is the step and one round trip per epoch is enough. The run's
    status is not touched here: :func:`trainlab.training.fit_run` ends the run (FINISHED/FAILED/KILLED).

    Writes are synchronous and at most one a second (see the module docstring); :meth:`flush` writes what
    is held.

    ``history`` keeps every value written, for plots at the end of the run without reading them back.
    """

    def __init__(self, run_id: str, tracking_uri: str, experiment_name: str, experiment_id: str | None = None) -> None:
        super().__init__(experiment_name=experiment_name, tracking_uri=tracking_uri, run_id=run_id, log_model=False)
        # Known to the caller (RunRecord): Lightning would read the whole run (params, metrics, tags) to learn it.
        self._experiment_id = experiment_id
        self.history: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self._pending: dict[tuple[int, str], float] = {}  # (step, name) -> value
        self._stamps: dict[int, int] = {}  # step -> timestamp (ms): one per epoch, as if written at once
        self._pending_step: int | None = None
        self._last_write = time.monotonic()
        self._epoch_of: Callable[[], int] | None = None
        self._in_flight: list[Any] = []  # MLflow RunOperations of asynchronous writes not yet waited for
        self._written_through: dict[str, int] = {}  # a resumed run: the last step already in the store, by name
        self.store_lost = False  # a write found the store gone after its retry window: no second wait

    @property
    def experiment(self):
        if not self._initialized and self._experiment_id is not None and self._run_id is not None:
            import mlflow

            mlflow.set_tracking_uri(self._tracking_uri)  # as Lightning's first use does
            self._initialized = True
        return super().experiment

    def continue_history(self) -> None:
        """A resumed run: read what the run already holds, so that curves and plots cover every epoch and an
        epoch trained again after the last checkpoint is not written twice (its values are the same)."""
        from trainlab.reproduce.recorded import metric_histories

        client = self.experiment
        for name, points in metric_histories(client, client.get_run(self.run_id)).items():
            self.history[name] = list(points)
            self._written_through[name] = max(step for step, _ in points)

    def follow_epochs_of(self, epoch_of: Callable[[], int]) -> None:
        """Take the step from the trainer's epoch, also for metrics logged without one (LearningRateMonitor)."""
        self._epoch_of = epoch_of

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        # trainlab logs the flattened resolved config itself; Lightning's hparams would duplicate it.
        return

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = dict(metrics)
        epoch = metrics.pop("epoch", None)
        if self._epoch_of is not None:
            step = self._epoch_of()
        elif epoch is not None:
            step = int(epoch)
        epoch_ended = self._pending_step is not None and step != self._pending_step
        if epoch_ended and time.monotonic() - self._last_write >= MIN_SECONDS_BETWEEN_WRITES:
            self._send(synchronous=True)  # nothing recorded may be lost to a hard crash
        self._pending_step = step = step or 0
        self._stamps.setdefault(step, int(time.time() * 1000))
        for name, value in metrics.items():
            self._pending[(step, _metric_name(name))] = float(value)

    @rank_zero_only
    def flush(self) -> None:
        """Write every held metric and wait until the store has them all (fit_run ends the run next)."""
        if self.store_lost:
            return
        self.wait_for_writes()
        self._send(synchronous=True)

    @rank_zero_only
    def wait_for_writes(self) -> None:
        """Wait for the asynchronous writes already sent; an error of one is raised here."""
        in_flight, self._in_flight = self._in_flight, []
        for operation in in_flight:
            operation.wait()

    def _send(self, synchronous: bool) -> None:
        if self._written_through:
            self._pending = {(step, name): value for (step, name), value in self._pending.items() if step > self._written_through.get(name, -1)}
        if not self._pending:
            return
        from mlflow.entities import Metric

        batch = [Metric(key=name, value=value, timestamp=self._stamps[step], step=step) for (step, name), value in self._pending.items()]
        for start in range(0, len(batch), _BATCH_LIMIT):
            try:
                operation = self.experiment.log_batch(run_id=self.run_id, metrics=batch[start : start + _BATCH_LIMIT], synchronous=synchronous)
            except Exception as exc:
                from trainlab.tracking.store_lost import give_up, is_store_unavailable

                self.store_lost = is_store_unavailable(exc)
                if self.store_lost:
                    give_up()  # fit_run reports it once the run has ended
                raise
            if operation is not None:
                self._in_flight.append(operation)
        for (step, name), value in self._pending.items():
            self.history[name].append((step, value))
        self._pending, self._stamps = {}, {}
        self._last_write = time.monotonic()

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        self.flush()


def _metric_name(name: str) -> str:
    """LearningRateMonitor names curves after the optimizer class (``lr-Adam``); one name lets trials compare."""
    match = _LR_MONITOR_NAME.match(name)
    if not match:
        return name
    return ("optim/momentum" if match.group(1) else "optim/lr") + (match.group(2) or "")
