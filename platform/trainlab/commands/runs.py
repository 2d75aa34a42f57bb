"""List the recent runs of an experiment as a table: id, name, status, the study metric, key metrics.

A pruned trial shows status PRUNED (MLflow records it KILLED, as it does an interrupted run); a study's
runs (parent and trials) show the study's metric and its value: the best epoch's where the run logged
``best/<metric>``, else the last one.
"""

from __future__ import annotations

import argparse

KEY_METRICS = ("test/acc", "test/f1", "test/loss", "val/loss", "test/mse", "test/dice")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainlab.cli import add_tracking_uri

    parser.add_argument("--experiment", "-e", default=None, help="experiment name (default: every experiment)")
    parser.add_argument("--limit", "-n", type=int, default=20, help="how many runs to show (default 20)")
    add_tracking_uri(parser)


def run(args: argparse.Namespace) -> int:
    from trainlab.errors import ConfigError
    from trainlab.tracking.store import open_tracking_store, resolve_tracking_uri

    if args.limit < 1:
        raise ConfigError("--limit", args.limit, "an integer >= 1")
    uri = resolve_tracking_uri(args.tracking_uri)
    client = open_tracking_store(uri, create=False)  # a reading command never creates a store
    if args.experiment:
        experiment = client.get_experiment_by_name(args.experiment)
        if experiment is None:
            names = [e.name for e in client.search_experiments()]
            raise ConfigError("--experiment", args.experiment, f"an existing experiment ({', '.join(names) or 'none yet'})")
        experiment_ids = [experiment.experiment_id]
    else:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiment_ids, max_results=args.limit, order_by=["attributes.start_time DESC"]) if experiment_ids else []
    if not runs:
        print(f"no runs in {uri}")
        return 0
    shown = [m for m in KEY_METRICS if any(m in r.data.metrics for r in runs)][:4]
    metric_of = _study_metrics(client, runs)
    header = ["run_id", "name", "status", "start", "study metric", *shown]
    rows = [
        [
            run.info.run_id,
            (run.info.run_name or "")[:36],
            _status(run),
            _time(run.info.start_time),
            _study_value(run, metric_of.get(run.info.run_id)),
            *(f"{run.data.metrics[m]:.4f}" if m in run.data.metrics else "-" for m in shown),
        ]
        for run in runs
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _time(millis: int | None) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(millis / 1000).strftime("%Y-%m-%d %H:%M") if millis else "-"


def _status(run) -> str:
    if run.info.status == "KILLED" and run.data.tags.get("trainlab.pruned") == "true":
        return "PRUNED"
    return run.info.status


def _study_metrics(client, runs) -> dict[str, str]:
    """run id → the metric of the study it belongs to (its own tag on a parent run, the parent's on a trial)."""
    from mlflow.exceptions import MlflowException

    parents = {run.info.run_id: run for run in runs if "trainlab.study.metric" in run.data.tags}
    found = {}
    for run in runs:
        parent_id = run.info.run_id if run.info.run_id in parents else run.data.tags.get("mlflow.parentRunId")
        if not parent_id or "trainlab.study" not in run.data.tags:
            continue
        if parent_id not in parents:
            try:
                parents[parent_id] = client.get_run(parent_id)
            except MlflowException:
                continue
        metric = parents[parent_id].data.tags.get("trainlab.study.metric")
        if metric:
            found[run.info.run_id] = metric
    return found


def _study_value(run, metric: str | None) -> str:
    if metric is None:
        return "-"
    metrics = run.data.metrics
    value = metrics.get(f"best/{metric}", metrics.get(metric))
    return f"{metric}={value:.4f}" if value is not None else f"{metric}=-"
