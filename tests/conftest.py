"""Shared fixtures: a real MLflow store per test, the CLI run in-process, service checks that fail in CI."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STUDIES = REPO / "studies"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def need(condition: bool, reason: str) -> None:
    """Skip with a visible reason on a developer machine; fail in CI, where every service must be present."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI requires it: {reason}")
    pytest.skip(reason)


def postgres_available(host: str = "127.0.0.1", port: int = 5432) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def postgres_admin(sql: str) -> None:
    """Run one statement (CREATE/DROP DATABASE) on the local PostgreSQL, outside a transaction."""
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as connection:
        connection.execute(sql)


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """Run each test in its own directory, so the default sqlite:///mlflow.db lands in tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture
def tracking_uri(workdir) -> str:
    return f"sqlite:///{workdir / 'mlflow.db'}"


@pytest.fixture
def mlflow_client(tracking_uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out[-2000:]!r}, err={self.err[-2000:]!r})"


@pytest.fixture
def cli():
    """Call ``trainlab`` in this process (no 8 s interpreter start-up): ``cli("train", path, ...)``."""
    from trainlab.cli import main

    def run(*args: str) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
        return CliResult(code, out.getvalue(), err.getvalue())

    return run


def all_runs(tracking_uri: str):
    """Every run in every experiment of the store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, max_results=5000) if experiments else []


@pytest.fixture
def fast_digits(workdir) -> Path:
    """A 3-epoch copy of the demo experiment, for tests that need a real but quick run."""
    import yaml

    document = yaml.safe_load((STUDIES / "digits_mlp.yaml").read_text())
    document.pop("study", None)
    document.pop("search_space", None)
    document["trainer"]["max_epochs"] = 3
    path = workdir / "fast_digits.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
