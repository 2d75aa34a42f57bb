"""What the parent run, the trial runs and optuna-dashboard show once a study (or a resumed part of it) ends.

Parent run: metrics ``best/<metric>`` and ``study/trials_*``; tags naming the best trial, its run and
params; a description linking the best trial's run and the study in optuna-dashboard; artifacts
``trials.csv``, ``best_config.yaml`` (a runnable experiment file) and ``plots/`` (``study.html`` with
Optuna's plots, self-contained, and one PNG per plot). Trial runs: see :mod:`trainlab.studies.marks`.
optuna-dashboard: the metric's name and, per trial, a note linking its MLflow run. Written again on
every resume.

The best trial is the complete trial with the best value; of trials tied on that value, the one with
the lowest number (the earliest) wins. With constraints only feasible trials count. A study with several
metrics has no best trial but a Pareto front (:mod:`trainlab.studies.pareto`): metric
``study/pareto_trials``, tag ``trainlab.study.pareto_trials``, ``pareto.csv``, the front in the
description and ``plots/pareto_front.{html,png}``; its trial runs are tagged ``trainlab.pareto=true``.
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

from trainlab.studies.links import dashboard_study_url, mlflow_run_url
from trainlab.studies.marks import link_trials_in_dashboard, mark_trial_runs
from trainlab.studies.plots import write_study_plots
from trainlab.studies.spec import StudySpec
from trainlab.studies.stale import FAIL_REASON_ATTR, was_reaped
from trainlab.studies.trial import EPOCHS_ATTR, MLFLOW_RUN_ATTR, TEST_METRICS_ATTR


@dataclass
class StudySummary:
    """Counts and the best trial of a study, as reported on its parent run."""

    complete: int
    pruned: int
    failed: int
    running: int
    epochs: int
    lost: int = 0  # failed trials whose worker died (killed, crashed), reaped by trainlab
    best_number: int | None = None
    best_value: float | None = None
    best_run_id: str | None = None
    best_params: dict[str, Any] | None = None
    pareto_numbers: list[int] | None = None  # several metrics: the Pareto trials' numbers


def display_name(optuna_name: str) -> str:
    """``optimizer.init_args.lr@Adam`` → ``optimizer.init_args.lr``: the config key a user knows.

    Optuna keeps a conditional parameter per branch (``@Adam``, ``@SGD``: separate dimensions for the
    sampler); a trial takes one branch only, so within a trial the config key alone is unambiguous.
    """
    return optuna_name.split("@", 1)[0]


def display_params(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's params under their config keys (see :func:`display_name`)."""
    return {display_name(name): value for name, value in params.items()}


def best_trial(study):
    """The complete trial with the best value; on a tie the lowest trial number wins. None before any completes."""
    from optuna.trial import TrialState

    from trainlab.studies.pareto import is_feasible

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if is_feasible(t)]
    if not complete:
        return None
    sign = -1.0 if study.direction.name == "MAXIMIZE" else 1.0
    return min(complete, key=lambda t: (sign * t.value, t.number))


def summarize(study) -> StudySummary:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    count = lambda state: sum(t.state == state for t in trials)  # noqa: E731
    summary = StudySummary(
        complete=count(TrialState.COMPLETE),
        pruned=count(TrialState.PRUNED),
        failed=count(TrialState.FAIL),
        running=count(TrialState.RUNNING),
        epochs=sum(len(t.intermediate_values) or t.user_attrs.get(EPOCHS_ATTR, 0) for t in trials),
        lost=sum(t.state == TrialState.FAIL and was_reaped(t) for t in trials),
    )
    if len(study.directions) > 1:
        from trainlab.studies.pareto import pareto_trials

        summary.pareto_numbers = [t.number for t in pareto_trials(study)]
        return summary
    best = best_trial(study)
    if best is not None:
        summary.best_number, summary.best_value = best.number, best.value
        summary.best_run_id, summary.best_params = best.user_attrs.get(MLFLOW_RUN_ATTR), display_params(best.params)
    return summary


def write_study_report(study, spec: StudySpec, tracking_uri: str, parent_run_id: str, plots: bool = True) -> StudySummary:
    """The study's counts, best trial, trial marks, trials.csv, best config and (``plots``) Optuna's plots on the
    parent run; returns the summary. ``plots=False``: the caller logs them (:func:`log_study_plots`)."""
    from mlflow.entities import Metric, RunTag
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

    from trainlab.tracking.store import tracking_client

    client = tracking_client(tracking_uri)
    summary = summarize(study)
    step = summary.complete + summary.pruned
    now = int(time.time() * 1000)
    metrics = {
        "study/trials_complete": summary.complete,
        "study/trials_pruned": summary.pruned,
        "study/trials_failed": summary.failed,
        "study/trials_lost": summary.lost,
        "study/epochs_trained": summary.epochs,
    }
    tags = {"trainlab.study.lost_trials": str(summary.lost)}
    if summary.pareto_numbers is not None:
        metrics["study/pareto_trials"] = len(summary.pareto_numbers)
        tags["trainlab.study.pareto_trials"] = ",".join(map(str, summary.pareto_numbers))
    if summary.best_number is not None:
        metrics[f"best/{spec.metric}"] = summary.best_value
        tags |= {
            "trainlab.study.best_trial": str(summary.best_number),
            "trainlab.study.best_run_id": summary.best_run_id or "",
            "trainlab.study.best_params": json.dumps(summary.best_params)[:5000],
        }
    parent = client.get_run(parent_run_id)
    experiment_id = parent.info.experiment_id
    tags[MLFLOW_RUN_NOTE] = parent_description(study, spec, summary, tracking_uri, experiment_id)
    client.log_batch(
        parent_run_id,
        metrics=[Metric(key, float(value), now, step) for key, value in metrics.items()],
        tags=[RunTag(key, value) for key, value in tags.items()],
    )
    mark_trial_runs(study, spec, client, tracking_uri, experiment_id, parent_run_id, summary.best_number, summary.pareto_numbers)
    name_metric(study, spec.metrics)
    link_trials_in_dashboard(study, tracking_uri, experiment_id, parent_run_id)
    with tempfile.TemporaryDirectory(prefix="trainlab-study-") as tmp:
        folder = Path(tmp)
        _write_trials_csv(study, spec, folder / "trials.csv")
        if summary.best_run_id:
            _write_best_config(client, spec, summary, folder)
        if summary.pareto_numbers is not None:
            write_pareto_csv(study, spec, folder / "pareto.csv")
        if plots and summary.complete + summary.pruned:
            write_study_plots(study, spec.metric, folder / "plots", metrics=spec.metrics)
        client.log_artifacts(parent_run_id, str(folder))
    return summary


def log_study_plots(study, spec: StudySpec, tracking_uri: str, parent_run_id: str) -> None:
    """Optuna's plots of the study (``plots/`` of the parent run), once a trial has ended."""
    from optuna.trial import TrialState

    from trainlab.tracking.store import tracking_client

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        return
    with tempfile.TemporaryDirectory(prefix="trainlab-study-") as tmp:
        write_study_plots(study, spec.metric, Path(tmp) / "plots", metrics=spec.metrics)
        tracking_client(tracking_uri).log_artifacts(parent_run_id, tmp)


def parent_description(study, spec: StudySpec, summary: StudySummary, tracking_uri: str, experiment_id: str) -> str:
    """The parent run's description (MLflow renders it as Markdown above the run's details)."""
    lines = [
        f"Optuna study **{spec.name}**: {objectives_text(spec)}; each trial is a nested run.",
        "",
        f"Trials: {summary.complete} complete, {summary.pruned} pruned, {summary.failed} failed.",
        "",
    ]
    if summary.best_number is not None and summary.best_run_id:
        url = mlflow_run_url(tracking_uri, experiment_id, summary.best_run_id)
        lines.append(
            f"**Best: [trial {summary.best_number}]({url})**, `{spec.metric}` = {summary.best_value:.6g}"
            " (of tied trials, the earliest wins)."
        )
        params = ", ".join(f"`{name}` = {value}" for name, value in summary.best_params.items())
        lines += ["", f"Best params: {params}", ""]
    if summary.pareto_numbers is not None:
        lines += [f"**Pareto front: {len(summary.pareto_numbers)} trial(s)** (`pareto.csv`, `plots/pareto_front.html`):", ""]
        lines += pareto_markdown(study, spec, tracking_uri, experiment_id) + [""]
    lines.append(f"The study in optuna-dashboard: [{spec.name}]({dashboard_study_url(study)}) (served by `trainlab ui`).")
    return "\n".join(lines)


def objectives_text(spec: StudySpec) -> str:
    """``maximize `val/acc`, minimize `model/params`; subject to model/params <= 50000``."""
    text = ", ".join(f"{direction} `{metric}`" for metric, direction in zip(spec.metrics, spec.directions))
    if spec.constraints:
        text += "; subject to " + ", ".join(f"`{c.describe()}`" for c in spec.constraints)
    return text


def pareto_rows(study, spec: StudySpec) -> tuple[list[str], list[list[Any]]]:
    """The Pareto trials as a table: number, every objective and constrained metric, params, run id."""
    from trainlab.studies.pareto import pareto_trials, pick_metrics, trial_values_of

    front = pareto_trials(study)
    metrics = pick_metrics(spec)
    params = sorted({display_name(name) for t in front for name in t.params})
    header = ["number", *metrics, *params, "mlflow_run_id"]
    rows = []
    for t in front:
        values = trial_values_of(t, spec)
        rows.append([t.number, *(values.get(m, "") for m in metrics), *(display_params(t.params).get(p, "") for p in params), t.user_attrs.get(MLFLOW_RUN_ATTR, "")])
    return header, rows


def write_pareto_csv(study, spec: StudySpec, path: Path) -> None:
    header, rows = pareto_rows(study, spec)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def pareto_markdown(study, spec: StudySpec, tracking_uri: str, experiment_id: str) -> list[str]:
    header, rows = pareto_rows(study, spec)
    metrics = header[1 : 1 + len(spec.metrics)]
    lines = ["| trial | " + " | ".join(f"`{m}`" for m in metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for row in rows:
        link = f"[{row[0]}]({mlflow_run_url(tracking_uri, experiment_id, row[-1])})" if row[-1] else str(row[0])
        lines.append(f"| {link} | " + " | ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row[1 : 1 + len(metrics)]) + " |")
    return lines


def name_metric(study, metric: str | list[str]) -> None:
    """Name the objectives after the study metrics: optuna-dashboard and Optuna's plots show them instead of
    "Objective 0"."""
    import warnings

    from optuna.exceptions import ExperimentalWarning

    names = [metric] if isinstance(metric, str) else list(metric)
    if study.metric_names != names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            study.set_metric_names(names)


def _write_trials_csv(study, spec: StudySpec, path: Path) -> None:
    trials = study.get_trials(deepcopy=False)
    params = sorted({display_name(name) for t in trials for name in t.params})
    tests = sorted({name for t in trials for name in (t.user_attrs.get(TEST_METRICS_ATTR) or {})})
    from trainlab.studies.pareto import pick_metrics, trial_values_of

    several = spec.is_multi_objective or bool(spec.constraints)
    value_columns = pick_metrics(spec) if several else [spec.metric]
    header = ["number", "state", *value_columns, *(["feasible"] if spec.constraints else []), "epochs", "duration_s", *params, *tests, "mlflow_run_id", "fail_reason"]
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
                    *(
                        (trial_values_of(t, spec).get(m, "") for m in value_columns) if several
                        else ["" if t.value is None else t.value]
                    ),
                    *([_feasible_text(t)] if spec.constraints else []),
                    len(t.intermediate_values),
                    f"{duration:.1f}" if duration != "" else "",
                    *(display_params(t.params).get(name, "") for name in params),
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


def _feasible_text(trial) -> str:
    from trainlab.studies.pareto import is_feasible

    return "" if not trial.constraints else str(is_feasible(trial)).lower()
