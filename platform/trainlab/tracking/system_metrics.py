"""MLflow's system metrics (``system/cpu_utilization_percentage``, ``system/system_memory_usage_megabytes``, ...)
for a run that ``tracking.system_metrics: true`` asks for.

trainlab creates runs with the client, not ``mlflow.start_run(log_system_metrics=True)``, so it starts MLflow's
own monitor for the run itself. MLflow samples every 10 s (``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL``
changes it) and drops the last, partial interval when the run ends; :meth:`SystemMetrics.stop` logs that
interval too, so that a run shorter than one interval still has its system curves.

Example::

    monitor = SystemMetrics.start(run_id, "sqlite:///mlflow.db")
    ...  # train
    monitor.stop()
"""

from __future__ import annotations

import logging


class SystemMetrics:
    """MLflow's ``SystemMetricsMonitor`` for one run, started and stopped with it (rank 0 only)."""

    def __init__(self, monitor) -> None:
        self._monitor = monitor

    @classmethod
    def start(cls, run_id: str, tracking_uri: str) -> SystemMetrics:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        # MLflow reports "Started monitoring system metrics." at INFO on the terminal: the config asked for it.
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
        monitor = SystemMetricsMonitor(run_id, tracking_uri=tracking_uri)
        monitor.start()
        return cls(monitor)

    def stop(self) -> None:
        """Stop sampling and log what the last, partial interval sampled (before the run ends)."""
        monitor = self._monitor
        monitor.finish()
        try:
            if any(m._metrics for m in monitor.monitors):  # samples of the interval MLflow's loop left unlogged
                monitor.publish_metrics(monitor.aggregate_metrics())
                monitor.mlflow_logger.flush()
        except Exception as exc:  # system curves are a nicety; they never fail the run they describe
            logging.getLogger(__name__).warning("system metrics: the last sample was not logged: %s", exc)
