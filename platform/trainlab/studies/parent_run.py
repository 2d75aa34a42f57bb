"""The study's parent run in MLflow: created once, reopened on resume, ended with the study's status."""

from __future__ import annotations

import json

import yaml

from trainlab.config.experiment import Experiment
from trainlab.studies.loading import PARENT_RUN_ATTR, experiment_document
from trainlab.studies.spec import StudySpec
from trainlab.secrets import mask_uri


def study_tags(spec: StudySpec, storage_url: str) -> dict[str, str]:
    tags = {
        "trainlab.kind": "study",
        "trainlab.study": spec.name,
        "trainlab.study.metric": spec.metric,
        "trainlab.study.direction": spec.direction,
        "trainlab.study.storage": mask_uri(storage_url),
        "trainlab.study.n_trials": str(spec.n_trials or ""),
    }
    if spec.is_multi_objective or spec.constraints:
        # every objective and constraint, for commands that read the study from MLflow (confirm, reproduce)
        tags["trainlab.study.metrics"] = json.dumps(dict(zip(spec.metrics, spec.directions)))
        tags["trainlab.study.constraints"] = json.dumps({c.metric: f"{c.op} {c.bound:g}" for c in spec.constraints})
    return tags


def ensure_parent_run(study, spec: StudySpec, experiment: Experiment, tracking_uri: str, storage_url: str) -> str:
    """The parent run's id: the one the study recorded (set RUNNING again), or a new one."""
    import trainlab
    from trainlab.studies.report import objectives_text
    from trainlab.tracking.run_record import RunRecord
    from trainlab.tracking.store import tracking_client

    client = tracking_client(tracking_uri)
    run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if run_id and _exists(client, run_id):
        client.update_run(run_id, status="RUNNING")
        client.set_tag(run_id, "trainlab.study.n_trials", str(spec.n_trials or ""))
        return run_id
    record = RunRecord.create(
        tracking_uri,
        experiment=spec.experiment_name,
        run_name=spec.name,
        tags={"trainlab.version": trainlab.__version__, **study_tags(spec, storage_url)},
        description=f"Optuna study {spec.name}: {objectives_text(spec).replace('`', '')}; each trial is a nested run.",
    )
    record.log_params(
        {
            "study.metric": spec.metric,
            "study.direction": spec.direction,
            "study.sampler": json.dumps(spec.sampler),
            "study.pruner": json.dumps(spec.pruner),
            "study.retry_failed": spec.retry_failed,
        }
    )
    record.log_text(yaml.safe_dump(experiment_document(experiment), sort_keys=False), "experiment.yaml")
    study.set_user_attr(PARENT_RUN_ATTR, record.run_id)
    return record.run_id


def end_parent_run(tracking_uri: str, run_id: str, status: str, reason: str | None = None) -> None:
    from trainlab.tracking.run_record import RUN_STATUS_TAG
    from trainlab.tracking.store import tracking_client

    client = tracking_client(tracking_uri)
    if reason:
        client.set_tag(run_id, RUN_STATUS_TAG, reason[:5000])
    client.set_terminated(run_id, status)


def _exists(client, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException:
        return False
