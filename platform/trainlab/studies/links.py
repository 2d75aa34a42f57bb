"""Addresses of a study's pages in the two browsers, for the links each one shows to the other.

A local store (SQLite, journal file) has no web address of its own; the links then point where
``trainlab ui`` serves by default (MLflow UI on port 5000, optuna-dashboard on 8080). A tracking store
that is a server (``http://host:5000``) is its own UI.
"""

from __future__ import annotations

from trainlab.secrets import without_credentials
from trainlab.web_server import DASHBOARD_PORT, MLFLOW_UI_PORT

_LOCAL = "http://127.0.0.1"


def mlflow_ui_url(tracking_uri: str) -> str:
    """The MLflow UI that shows runs of ``tracking_uri``."""
    if tracking_uri.startswith(("http://", "https://")):
        return without_credentials(tracking_uri).rstrip("/")  # a link is shown to everyone who reads the run
    return f"{_LOCAL}:{MLFLOW_UI_PORT}"


def mlflow_run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    return f"{mlflow_ui_url(tracking_uri)}/#/experiments/{experiment_id}/runs/{run_id}"


def dashboard_study_url(study) -> str:
    """optuna-dashboard's page of ``study``; the dashboard routes by Optuna's internal study id, which
    Optuna exposes on no public attribute."""
    return f"{_LOCAL}:{DASHBOARD_PORT}/dashboard/studies/{study._study_id}"
