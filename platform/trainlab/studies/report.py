"""What the parent run shows once a study (or a resumed part of it) ends.

Metrics ``best/<metric>`` and ``study/trials_*``; tags naming the best trial, its run and params;
artifacts ``trials.csv``, ``best_config.yaml`` (a runnable experiment file) and ``plots/`` (``study.html``
with Optuna's plots, self-contained, and one PNG per plot). Written again on every resume.
"""

from __future__ import annotations

import csv
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trainlab.studies.plots import write_study_plots
from trainlab.studies.spec import StudySpec
from trainlab.studies.stale import FAIL_REASON_ATTR
from trainlab.studies.trial import MLFLOW_RUN_ATTR, TEST_METRICS_ATTR


@dataclass
class StudySummary:
    """Counts and the best trial of a study, as reported on its parent run."""

    complete: int
    pruned: int
    failed: int
    running: int
    epochs: int
    best_number: int | None = None
    best_value: float | None = None
    best_run_id: str | None = None
    best_params: dict[str, Any] | None = None


def summarize(study) -> StudySummary:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    count = lambda state: sum(t.state == state for t in trials)  # noqa: E731
    summary = StudySummary(
        complete=count(TrialState.COMPLETE),
        pruned=count(TrialState.PRUNED),
        failed=count(TrialState.FAIL),
        running=count(TrialState.RUNNING),
        epochs=sum(len(t.intermediate_values) for t in trials),
    )
    if summary.complete:
        best = study.best_trial
        summary.best_number, summary.best_value = best.number, best.value
        summary.best_run_id, summary.best_params = best.user_attrs.get(MLFLOW_RUN_ATTR), best.params
    return summary


def write_study_report(study, spec: StudySpec, tracking_uri: str, parent_run_id: str) -> StudySummary:
    from mlflow.entities import Metric, RunTag

    from trainlab.tracking.store import tracking_client

    client = tracking_client(tracking_uri)
    summary = summarize(study)
    step = summary.complete + summary.pruned
    now = int(time.time() * 1000)
    metrics = {
        "study/trials_complete": summary.complete,
        "study/trials_pruned": summary.pruned,
        "study/trials_failed": summary.failed,
        "study/epochs_trained": summary.epochs,
    }
    tags = {}
    if summary.best_number is not None:
        metrics[f"best/{spec.metric}"] = summary.best_value
        tags = {
            "trainlab.study.best_trial": str(summary.best_number),
            "trainlab.study.best_run_id": summary.best_run_id or "",
            "trainlab.study.best_params": json.dumps(summary.best_params)[:5000],
        }
    client.log_batch(
        parent_run_id,
        metrics=[Metric(key, float(value), now, step) for key, value in metrics.items()],
        tags=[RunTag(key, value) for key, value in tags.items()],
    )
    with tempfile.TemporaryDirectory(prefix="trainlab-study-") as tmp:
        folder = Path(tmp)
        _write_trials_csv(study, spec, folder / "trials.csv")
        if summary.best_run_id:
            _write_best_config(client, spec, summary, folder)
        if summary.complete + summary.pruned:
            write_study_plots(study, spec.metric, folder / "plots")
        client.log_artifacts(parent_run_id, str(folder))
    return summary


def _write_trials_csv(study, spec: StudySpec, path: Path) -> None:
    trials = study.get_trials(deepcopy=False)
    params = sorted({name for t in trials for name in t.params})
    tests = sorted({name for t in trials for name in (t.user_attrs.get(TEST_METRICS_ATTR) or {})})
    header = ["number", "state", spec.metric, "epochs", "duration_s", *params, *tests, "mlflow_run_id", "fail_reason"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for t in trials:
            duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_start and t.datetime_complete else ""
            test_metrics = t.user_attrs.get(TEST_METRICS_ATTR) or {}
            writer.writerow(
                [
                    t.number,
                    t.state.name,
                    "" if t.value is None else t.value,
                    len(t.intermediate_values),
                    f"{duration:.1f}" if duration != "" else "",
                    *(t.params.get(name, "") for name in params),
                    *(test_metrics.get(name, "") for name in tests),
                    t.user_attrs.get(MLFLOW_RUN_ATTR, ""),
                    t.user_attrs.get(FAIL_REASON_ATTR, ""),
                ]
            )


def _write_best_config(client, spec: StudySpec, summary: StudySummary, folder: Path) -> None:
    """The best trial's own resolved config, renamed: ``trainlab train best_config.yaml`` re-runs it."""
    from mlflow.exceptions import MlflowException

    from trainlab.reproduce.recorded import recorded_config

    try:
        document = recorded_config(client, summary.best_run_id)
    except (MlflowException, OSError):
        return
    document.setdefault("tracking", {})["run_name"] = f"{spec.name}-best"
    header = (
        f"# Best trial {summary.best_number} of study {spec.name}: {spec.metric}={summary.best_value:.6g}\n"
        f"# (run {summary.best_run_id}). Re-run it with: trainlab train best_config.yaml\n"
    )
    (folder / "best_config.yaml").write_text(header + yaml.safe_dump(document, sort_keys=False))
