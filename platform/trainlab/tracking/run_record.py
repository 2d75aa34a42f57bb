"""One MLflow run's life on rank 0: created before training, ended exactly once with its true status."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

RUN_STATUS_TAG = "trainlab.status_reason"


def flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"init_args": {"dropout": 0.1}}}`` → ``{"model.init_args.dropout": 0.1}``."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class RunRecord:
    """Creates the run, writes params/tags/artifacts, and ends it FINISHED, FAILED or KILLED.

    Example::

        record = RunRecord.create(uri, experiment="digits", run_name="mlp", tags={})
        record.log_params({"model.init_args.dropout": 0.1})
        record.end("FINISHED")
    """

    def __init__(self, client, run_id: str, experiment_name: str, tracking_uri: str, heartbeat=None, experiment_id: str | None = None) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_name = experiment_name
        self.experiment_id = experiment_id
        self.tracking_uri = tracking_uri
        self.ended = False
        self.heartbeat = heartbeat  # keeps the run's heartbeat tag fresh until it ends (see tracking.reaper)
        self._system_metrics = None  # MLflow's sampler, when the run asked for system metrics

    def log_system_metrics(self) -> None:
        """Sample MLflow's system metrics (``system/*``) until the run ends (``tracking.system_metrics``)."""
        from trainlab.tracking.system_metrics import SystemMetrics

        self._system_metrics = SystemMetrics.start(self.run_id, self.tracking_uri)

    @classmethod
    def create(
        cls,
        tracking_uri: str,
        experiment: str,
        run_name: str | None,
        tags: Mapping[str, str],
        parent_run_id: str | None = None,
        description: str | None = None,
        owned: bool = False,
    ) -> "RunRecord":
        """``owned``: this process trains the run; it records itself as the run's owner and keeps a heartbeat,
        so that the reaper ends the run KILLED should this process die (a study's parent run is not owned)."""
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

        from trainlab.tracking.store import get_or_create_experiment, tracking_client

        from trainlab.tracking.context import context_tags
        from trainlab.tracking.reaper import owner_tags, start_heartbeat

        client = tracking_client(tracking_uri)
        experiment_id = get_or_create_experiment(client, experiment)
        mark_model_training(client, experiment_id)
        # MLflow's context tags first (user, source, git): the UI's "Created by" and "Source" columns.
        all_tags = {**context_tags(), **{key: str(value) for key, value in tags.items()}}
        if parent_run_id:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
        if description:
            all_tags[MLFLOW_RUN_NOTE] = description
        if owned:
            all_tags.update(owner_tags())
        run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
        heartbeat = start_heartbeat(client, run.info.run_id) if owned else None
        return cls(client, run.info.run_id, experiment, tracking_uri, heartbeat, experiment_id)

    @classmethod
    def reopen(cls, tracking_uri: str, run_id: str) -> "RunRecord":
        """An existing run, back to RUNNING and owned by this process: a resumed run continues where it was."""
        from trainlab.tracking.reaper import claim_run
        from trainlab.tracking.store import tracking_client

        client = tracking_client(tracking_uri)
        run = client.get_run(run_id)
        client.update_run(run_id, status="RUNNING")
        if RUN_STATUS_TAG in run.data.tags:  # why it ended before no longer holds: it ends again, with its own reason
            client.delete_tag(run_id, RUN_STATUS_TAG)
        heartbeat = claim_run(client, run_id)
        return cls(client, run_id, client.get_experiment(run.info.experiment_id).name, tracking_uri, heartbeat, run.info.experiment_id)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(key, _param_value(value)) for key, value in params.items() if value is not None]
        for start in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        if tags:
            self.client.log_batch(self.run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_json(self, data: Any, artifact_file: str) -> None:
        self.client.log_text(self.run_id, json.dumps(data, indent=2, default=str), artifact_file)

    def log_figure(self, figure, artifact_file: str) -> None:
        import matplotlib.pyplot as plt

        self.client.log_figure(self.run_id, figure, artifact_file)
        plt.close(figure)

    def log_file(self, path: str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, path, artifact_path)

    def abandon(self) -> None:
        """The store is gone: stop the heartbeat and write nothing more (the reaper ends the run later)."""
        if self.heartbeat is not None:
            self.heartbeat.stop()
        self.ended = True

    def end(self, status: str, reason: str | None = None) -> None:
        """End the run once; later calls do nothing, so a failure path can never overwrite a result."""
        if self.ended:
            return
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self._system_metrics is not None:  # its last samples are written while the run is still RUNNING
            self._system_metrics.stop()
            self._system_metrics = None
        if reason:
            from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

            self.set_tags({RUN_STATUS_TAG: reason[:MAX_TAG_VAL_LENGTH]})
        self.client.set_terminated(self.run_id, status)
        self.ended = True


def mark_model_training(client, experiment_id: str) -> None:
    """Tag the experiment as model training (``mlflow.experimentKind``) unless it already has a kind.

    MLflow 3.x UIs that read the tag open such an experiment on its runs, not on the GenAI overview;
    a kind the user chose in the UI is kept.
    """
    from trainlab.tracking.context import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND

    if EXPERIMENT_KIND_TAG not in client.get_experiment(experiment_id).tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict, tuple)) else str(value)
    return text[:6000]
