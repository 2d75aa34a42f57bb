"""How each trial's outcome reads where users look: MLflow's runs table and run page, and optuna-dashboard.

MLflow's runs table shows the run name and a status icon by default; KILLED (pruned) and FAILED share
the same red icon and tag columns are hidden until chosen, so the outcome goes into the run name, in
front, where the table's narrow name column does not cut it off: ``[pruned] study-trial-3``,
``[failed] study-trial-5``, ``[best] study-trial-7``; a complete trial keeps its plain name. Each trial run also gets tags ``trainlab.outcome`` (complete, pruned, failed) and, on the
best one only, ``trainlab.best=true``, and a description (Markdown) linking back to the parent run and
to the study in optuna-dashboard. A study with several metrics has a Pareto front instead of a best
trial: its trials are named ``[pareto] study-trial-4`` and tagged ``trainlab.pareto=true``, and every
complete trial carries ``trainlab.values`` (JSON: the values ``--pick`` reads). Only what changed is written, so a resumed study's report moves the
best mark without rewriting every run.
"""

from __future__ import annotations

import re
from typing import Any

from trainlab.studies.links import dashboard_study_url, mlflow_run_url
from trainlab.studies.stale import FAIL_REASON_ATTR
from trainlab.studies.trial import MLFLOW_RUN_ATTR

OUTCOME_TAG = "trainlab.outcome"
BEST_TAG = "trainlab.best"
_OUTCOMES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}
_MARK = re.compile(r"^\[(best|pareto|pruned|failed)\] ")
_USER_TEXT = "\n\n---\n\n"  # separates our lines from a description the user's config gave the run


def run_name_with_outcome(name: str, outcome: str | None, best: bool, pareto: bool = False) -> str:
    """``digits-trial-3`` → ``[pruned] digits-trial-3``; a previous mark is replaced."""
    base = _MARK.sub("", name)
    if best:
        return f"[best] {base}"
    if pareto:
        return f"[pareto] {base}"
    if outcome in ("pruned", "failed"):
        return f"[{outcome}] {base}"
    return base


def mark_trial_runs(
    study, spec, client, tracking_uri: str, experiment_id: str, parent_run_id: str, best_number: int | None, pareto_numbers: list[int] | None = None
) -> None:
    """Give every ended trial's run its outcome in the name, tags and description; mark the best one (or
    the Pareto trials)."""
    import json

    from mlflow.entities import RunTag
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME, MLFLOW_RUN_NOTE

    from trainlab.studies.pareto import PARETO_TAG, VALUES_TAG
    from trainlab.studies.trial import VALUES_ATTR

    trials = {t.user_attrs.get(MLFLOW_RUN_ATTR): t for t in study.get_trials(deepcopy=False) if t.state.name in _OUTCOMES}
    study_url = dashboard_study_url(study)
    parent_url = mlflow_run_url(tracking_uri, experiment_id, parent_run_id)
    for run in _child_runs(client, experiment_id, parent_run_id):
        trial = trials.get(run.info.run_id)
        if trial is None:
            continue
        outcome, best = _OUTCOMES[trial.state.name], trial.number == best_number
        pareto = pareto_numbers is not None and trial.number in pareto_numbers
        name = run_name_with_outcome(run.info.run_name or f"{spec.name}-trial-{trial.number}", outcome, best, pareto)
        tags = run.data.tags
        wanted = {
            MLFLOW_RUN_NAME: name,  # MLflow's store renames the run when this tag is written
            OUTCOME_TAG: outcome,
            MLFLOW_RUN_NOTE: _trial_description(trial, spec, outcome, best or pareto, parent_url, study_url, tags.get(MLFLOW_RUN_NOTE, "")),
        }
        if trial.user_attrs.get(VALUES_ATTR):
            wanted[VALUES_TAG] = json.dumps(trial.user_attrs[VALUES_ATTR], sort_keys=True)
        if pareto:
            wanted[PARETO_TAG] = "true"
        elif PARETO_TAG in tags:
            client.delete_tag(run.info.run_id, PARETO_TAG)
        if best:
            wanted[BEST_TAG] = "true"
        elif BEST_TAG in tags:
            client.delete_tag(run.info.run_id, BEST_TAG)
        changed = [RunTag(key, value) for key, value in wanted.items() if tags.get(key) != value]
        if changed:  # one write per run: a 20-trial report made ~60 separate commits
            client.log_batch(run.info.run_id, tags=changed)


def link_trials_in_dashboard(study, tracking_uri: str, experiment_id: str, parent_run_id: str) -> None:
    """A note on each trial in optuna-dashboard, and on the study, linking its MLflow run.

    The dashboard shows user attributes as plain text but renders notes as Markdown, so the link is a
    note. Optuna-dashboard's public ``save_note`` takes a live ``optuna.Trial``; the report runs after
    the trials ended, so the note is written with the function ``save_note`` itself calls.
    """
    try:
        from optuna_dashboard import save_note
        from optuna_dashboard._note import get_note_from_system_attrs, save_note_with_version
    except ImportError:  # optuna-dashboard is optional: without it there is nobody to show notes to
        return
    storage, study_id = study._storage, study._study_id
    attrs = storage.get_study_system_attrs(study_id)
    for trial in study.get_trials(deepcopy=False):
        run_id = trial.user_attrs.get(MLFLOW_RUN_ATTR)
        if not run_id:
            continue
        body = f"MLflow run of trial {trial.number}: [{run_id}]({mlflow_run_url(tracking_uri, experiment_id, run_id)})"
        note = get_note_from_system_attrs(attrs, trial._trial_id)
        if note["body"] != body:
            save_note_with_version(storage, study_id, trial._trial_id, note["version"] + 1, body)
    body = f"MLflow parent run of this study: [{parent_run_id}]({mlflow_run_url(tracking_uri, experiment_id, parent_run_id)})"
    current = get_note_from_system_attrs(attrs, None)["body"]
    if current != body and (not current or current.startswith("MLflow parent run of this study")):
        save_note(study, body)  # a note the user wrote in the dashboard is kept


def _trial_description(trial, spec, outcome: str, best: bool, parent_url: str, study_url: str, current: str) -> str:
    lines = [f"Trial {trial.number} of study **{spec.name}**: [parent run]({parent_url}), [optuna-dashboard]({study_url}).", ""]
    if best and spec.is_multi_objective:
        lines.append(f"**On the Pareto front of the study**: {_values_text(trial, spec)}.")
    elif outcome == "complete" and spec.is_multi_objective:
        lines.append(f"Complete (dominated or infeasible): {_values_text(trial, spec)}.")
    elif best:
        lines.append(f"**Best trial of the study**: `{spec.metric}` = {trial.value:.6g} (of tied trials, the earliest wins).")
    elif outcome == "complete":
        lines.append(f"Complete: `{spec.metric}` = {trial.value:.6g}.")
    elif outcome == "pruned":
        last = max(trial.intermediate_values) if trial.intermediate_values else None
        at = f" at epoch {last} (`{spec.metric}` = {trial.intermediate_values[last]:.6g})" if last is not None else ""
        lines.append(f"Pruned by Optuna{at}.")
    else:
        reason = str(trial.user_attrs.get(FAIL_REASON_ATTR, "no reason recorded"))
        lines.append(f"Failed: {reason[:500]}")
    ours = "\n".join(lines)
    return ours + _user_text(trial, current)


def _values_text(trial, spec) -> str:
    from trainlab.studies.pareto import trial_values_of

    return ", ".join(f"`{metric}` = {value:.6g}" for metric, value in trial_values_of(trial, spec).items())


def _user_text(trial, current: str) -> str:
    """Keep a description the run had from the user's config (``tracking.description``) below ours."""
    if current.startswith(f"Trial {trial.number} of study "):
        _, separator, user = current.partition(_USER_TEXT)
        return separator + user
    return _USER_TEXT + current if current else ""


def _child_runs(client, experiment_id: str, parent_run_id: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs
