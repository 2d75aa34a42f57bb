"""Which MLflow store a command talks to, checked before anything is read or written, and its client.

Reading commands (runs, diff, reproduce, confirm, ui) open the store with ``create=False`` and never make a
new one; commands that record (train, study) use ``create=True``. Either way a store that cannot work
(unknown scheme, missing directory, unreachable server, missing database) is one :class:`ConfigError`
line naming the URI, before MLflow writes a byte or retries for minutes.
"""

from __future__ import annotations

import contextlib
import functools
import os
import urllib.error
import urllib.request
from pathlib import Path

from trainlab.errors import ConfigError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # MLflow's own default: a plain `mlflow ui` here shows the same runs
SQLITE_PREFIX = "sqlite:///"
TRACKING_URI_EXAMPLES = "sqlite:///mlflow.db, postgresql://user@host/db or http://host:5000"
# Database schemes MLflow's SQLAlchemy store accepts (a driver may follow: postgresql+psycopg2).
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mssql")
# MLflow's own SQLAlchemy pool when the tracking URI is a database server: at most two connections per
# process (MLflow's default is SQLAlchemy's 5 + 10 overflow), so many workers fit in max_connections.
# Environment defaults, so a user's own setting wins and worker processes inherit them.
DATABASE_POOL_ENV = {"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "2", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "0"}
CONNECT_TIMEOUT_S = 5


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """``--tracking-uri`` wins, then ``MLFLOW_TRACKING_URI``, then ``sqlite:///mlflow.db`` in the working directory.

    A relative SQLite path is made absolute: MLflow caches one store per URI string, and worker processes
    may start elsewhere, so ``sqlite:///mlflow.db`` must not silently mean two different files.
    """
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    path = sqlite_path(uri)
    if path is not None and not os.path.isabs(path):
        uri = SQLITE_PREFIX + os.path.abspath(path)
    return uri


def sqlite_path(uri: str) -> str | None:
    """The file behind a ``sqlite:///PATH`` URI (``sqlite:////abs`` and ``sqlite:///rel`` alike), else None.

    None too for an in-memory database. The one place that takes SQLite URIs apart.
    """
    if not uri.startswith(SQLITE_PREFIX):
        return None
    path = uri[len(SQLITE_PREFIX) :].split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("file::memory:"):
        return None
    return os.path.expanduser(path)


def scheme(uri: str) -> str:
    """``postgresql`` for ``postgresql+psycopg2://…``; ``""`` for a plain path."""
    return uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""


def check_tracking_store(uri: str, *, create: bool, key: str = "--tracking-uri") -> None:
    """Raise :class:`ConfigError` (one line, the URI named) unless ``uri`` is a store MLflow can use now.

    ``create=False`` (reading commands): the store must already exist; nothing is created.
    ``create=True`` (train, study): a new SQLite file may be made, in an existing, writable directory.
    """
    kind = scheme(uri)
    if kind == "sqlite":
        path = sqlite_path(uri)
        if path is not None:
            check_sqlite_file(path, uri, create=create, key=key)
    elif kind in DATABASE_SCHEMES:
        check_database_server(uri, key=key)
    elif kind in ("http", "https"):
        _check_tracking_server(uri, key)
    elif kind in ("", "file"):
        _check_file_store(uri, create=create, key=key)
    elif kind != "databricks":
        raise ConfigError(key, uri, f"a tracking URI such as {TRACKING_URI_EXAMPLES} (unknown scheme {kind}://)")
    reap_dead_runs_in(uri)


def reap_dead_runs_in(uri: str) -> None:
    """Every command that opens a store first ends the runs there whose process is gone (one line each).

    Here, because every command checks its store here before using it. A store with nothing in it yet is
    left alone (a reading command must not create tables); a reaper that fails never stops the command.
    """
    import sys

    from trainlab.tracking.liveness import heartbeat_timeout_s
    from trainlab.tracking.reaper import reap_dead_runs

    from trainlab.tracking.store_lost import store_retry_s

    heartbeat_timeout_s()  # bad TRAINLAB_HEARTBEAT_TIMEOUT or TRAINLAB_STORE_RETRY: bad input, before anything runs
    store_retry_s()
    kind, path = scheme(uri), sqlite_path(uri)
    if kind == "databricks" or (path is not None and (not os.path.exists(path) or os.path.getsize(path) == 0)):
        return
    if kind in ("", "file") and not Path(uri[len("file://") :] if uri.startswith("file://") else uri).expanduser().is_dir():
        return
    try:
        reaped = reap_dead_runs(tracking_client(uri))
    except Exception:  # a store that is busy now is reaped by the next command
        return
    for run_id, reason in reaped:
        print(f"trainlab: run {run_id} was left RUNNING: {reason}; ended KILLED", file=sys.stderr)


def open_tracking_store(uri: str, *, create: bool, key: str = "--tracking-uri"):
    """The MLflow client for ``uri`` after :func:`check_tracking_store`."""
    check_tracking_store(uri, create=create, key=key)
    return tracking_client(uri)


def check_sqlite_file(path: str, uri: str, *, create: bool, key: str) -> None:
    """A SQLite store: for reading, an existing SQLite file; for writing, also a writable directory."""
    file = Path(path)
    blocker = _file_above(file)
    if blocker is not None:
        raise ConfigError(key, uri, f"a path whose folders are folders ({blocker} is a file)")
    if file.is_dir():
        raise ConfigError(key, uri, "a SQLite file, not a directory")
    if file.exists():
        if file.stat().st_size and not _is_sqlite_file(file):
            raise ConfigError(key, uri, "a SQLite database file (this file is something else)")
        if create and not (os.access(file, os.W_OK) and os.access(file.parent, os.W_OK)):
            raise ConfigError(key, uri, "a SQLite file in a folder this user can write", hint="permission denied")
        if not create and not os.access(file, os.R_OK):
            raise ConfigError(key, uri, "a SQLite file this user can read", hint="permission denied")
        return
    if not create:
        raise ConfigError(key, uri, "an existing MLflow store (no such file; reading commands never create one)")
    if not file.parent.is_dir():
        raise ConfigError(key, uri, f"a file in an existing directory ({file.parent} does not exist)")
    if not os.access(file.parent, os.W_OK | os.X_OK):
        raise ConfigError(key, uri, f"a file in a directory this user can write ({file.parent} is not writable)")


def check_database_server(url: str, *, key: str) -> None:
    """PostgreSQL/MySQL: the server answers and the database exists (one line naming host and database)."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError(key, url, "a database URL such as postgresql://user@host:5432/db") from None
    shown = parsed.render_as_string(hide_password=True)
    where = f"database {parsed.database!r} on {parsed.host or 'localhost'}:{parsed.port or 'default port'}"
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if parsed.get_backend_name() in ("postgresql", "mysql") else {}
    try:
        engine = sqlalchemy.create_engine(parsed, poolclass=sqlalchemy.pool.NullPool, connect_args=connect_args)
    except Exception as exc:  # no driver installed, bad query options
        raise ConfigError(key, shown, "a database URL whose driver is installed", hint=_first_line(exc)) from None
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except Exception as exc:
        reason = _first_line(getattr(exc, "orig", None) or exc)
        if "does not exist" in reason or "Unknown database" in reason:
            raise ConfigError(key, shown, f"an existing {where} (create it first, e.g. createdb)", hint=reason) from None
        raise ConfigError(key, shown, f"a reachable {where}", hint=reason) from None
    finally:
        engine.dispose()


def _check_tracking_server(uri: str, key: str) -> None:
    from trainlab.secrets import without_credentials

    # urllib takes user:password@ for part of the host name; the health probe needs no login anyway.
    try:
        with urllib.request.urlopen(without_credentials(uri).rstrip("/") + "/health", timeout=CONNECT_TIMEOUT_S):
            return
    except urllib.error.HTTPError:
        return  # it answers; MLflow reports what it does not like with its own message
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(key, uri, "a reachable MLflow tracking server (trainlab server starts one)", hint=str(reason)) from None


def _check_file_store(uri: str, *, create: bool, key: str) -> None:
    path = Path(uri[len("file://") :] if uri.startswith("file://") else uri).expanduser()
    blocker = _file_above(path / "x")
    if blocker is not None:
        raise ConfigError(key, uri, f"a directory for MLflow's file store ({blocker} is a file)")
    if not create and not path.is_dir():
        raise ConfigError(key, uri, "an existing MLflow store (no such directory; reading commands never create one)")


def _file_above(path: Path) -> Path | None:
    """The first ancestor of ``path`` that exists but is not a directory (``a.txt`` in ``a.txt/x.db``)."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def _is_sqlite_file(path: Path) -> bool:
    """Whether ``path`` is a SQLite database, asked of SQLite itself (read-only).

    Not by reading its first bytes: closing any file descriptor of a database drops every POSIX lock this
    process holds on it, and a store in WAL mode is locked while a connection is open (a second command in
    one process, a notebook). Another process would then take the store for unused and reset its log under
    our connection: a corrupt store. SQLite keeps its own descriptors open while it holds locks.
    """
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            connection.execute("PRAGMA schema_version")
    except sqlite3.Error:
        return False
    return True


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def tracking_client(uri: str):
    """The MLflow client every trainlab command records through; what it writes passes :func:`~trainlab.secrets.mask_text`."""
    if scheme(uri) in DATABASE_SCHEMES and scheme(uri) != "sqlite":
        for name, value in DATABASE_POOL_ENV.items():
            os.environ.setdefault(name, value)
    if scheme(uri) == "sqlite":
        from trainlab.tracking.new_store import seed_new_sqlite_store
        from trainlab.tracking.store_lost import wait_for_busy_sqlite

        if sqlite_path(uri):
            seed_new_sqlite_store(sqlite_path(uri))  # a copy of an empty store, not MLflow's 1.5 s of migrations
        wait_for_busy_sqlite()  # a locked store is waited for, within a bounded window
    from trainlab.fork_safety import remember_engines
    from trainlab.tracking.sqlite_wal import use_wal_for_sqlite

    remember_engines()  # its pooled connections are closed before a study forks a worker
    use_wal_for_sqlite()
    return _masking_client_class()(tracking_uri=uri)


@functools.cache
def _masking_client_class():
    """``MlflowClient`` whose tags, params, run names and text artifacts are masked before they are stored:
    one place for every run trainlab records (a failure reason may quote a URI with its password)."""
    from mlflow.entities import Param, RunTag
    from mlflow.tracking import MlflowClient

    from trainlab.secrets import mask_text, mask_values

    def masked(value):
        return mask_text(value) if isinstance(value, str) else value

    class MaskingMlflowClient(MlflowClient):
        def create_run(self, experiment_id, start_time=None, tags=None, run_name=None):
            return super().create_run(experiment_id, start_time, mask_values(dict(tags or {})), masked(run_name))

        def set_tag(self, run_id, key, value, synchronous=None):
            return super().set_tag(run_id, key, masked(value), synchronous=synchronous)

        def log_param(self, run_id, key, value, synchronous=None):
            return super().log_param(run_id, key, masked(value), synchronous=synchronous)

        def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
            params = [Param(p.key, masked(p.value)) for p in params]
            tags = [RunTag(t.key, masked(t.value)) for t in tags]
            return super().log_batch(run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)

        def log_text(self, run_id, text, artifact_file):
            return super().log_text(run_id, masked(text), artifact_file)

        def update_run(self, run_id, status=None, name=None):
            return super().update_run(run_id, status=status, name=masked(name))

        def set_experiment_tag(self, experiment_id, key, value):
            return super().set_experiment_tag(experiment_id, key, masked(value))

    return MaskingMlflowClient


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
