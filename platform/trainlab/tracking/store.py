"""Which MLflow store a command talks to, and its client."""

from __future__ import annotations

import os

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # MLflow's own default: a plain `mlflow ui` here shows the same runs


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """``--tracking-uri`` wins, then ``MLFLOW_TRACKING_URI``, then ``sqlite:///mlflow.db`` in the working directory.

    A relative SQLite path is made absolute: MLflow caches one store per URI string, and worker processes
    may start elsewhere, so ``sqlite:///mlflow.db`` must not silently mean two different files.
    """
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/") and ":memory:" not in uri:
        uri = prefix + os.path.abspath(uri[len(prefix) :])
    return uri


def local_store_dir(tracking_uri: str) -> str:
    """The directory holding a SQLite tracking store (else the working directory): where local siblings such as
    the default Optuna storage live."""
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix):
        return os.path.dirname(tracking_uri[len(prefix) :]) or os.getcwd()
    return os.getcwd()


def tracking_client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def get_or_create_experiment(client, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:
        # Another worker created it between our lookup and create.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id
