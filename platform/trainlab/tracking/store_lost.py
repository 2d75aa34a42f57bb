"""A tracking store that stops answering mid-run: how long writes wait for it, and what happens after.

Writes wait with a bounded backoff, by each store's own machinery, for at most :func:`store_retry_s`
(``TRAINLAB_STORE_RETRY``, seconds, default :data:`DEFAULT_STORE_RETRY_S`):

- SQLite: SQLite's busy handler retries a locked database with growing sleeps up to ``PRAGMA busy_timeout``.
  MLflow sets that pragma itself, hard-coded to 20 s, at the start of every session, and has no setting for
  it (its ``MLFLOW_SQLALCHEMYSTORE_*`` variables cover pools only; a ``?timeout=`` in the URI would be
  overwritten by that pragma, and would make the same store a second URI to MLflow's store cache and to
  every recorded tag). So :func:`wait_for_busy_sqlite` gives MLflow's pragma our window instead; should
  MLflow word it differently one day, its own 20 s apply.
- An MLflow server: MLflow's own ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``.

A store still gone after that ends the run's process with :class:`StoreLost`: one line naming the store
and where the last checkpoint was kept. The run stays RUNNING in the store, which cannot be written; the
first trainlab command that opens the store once it is back ends it KILLED (:mod:`trainlab.tracking.reaper`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

STORE_RETRY_ENV = "TRAINLAB_STORE_RETRY"
DEFAULT_STORE_RETRY_S = 120.0
_installed = False
_wait_ms = [int(DEFAULT_STORE_RETRY_S * 1000)] * 2  # the window now (0 once given up), and the one to restore


class StoreLost(Exception):
    """The tracking store did not answer within the retry window; the message is the one line to print."""


def store_retry_s() -> float:
    from trainlab.errors import ConfigError

    text = os.environ.get(STORE_RETRY_ENV, "").strip()
    if not text:
        return DEFAULT_STORE_RETRY_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(STORE_RETRY_ENV, text, "a number of seconds > 0 that writes wait for a busy tracking store")
    return value


def wait_for_busy_sqlite() -> None:
    """Every SQLite connection this process opens through SQLAlchemy waits up to the retry window for a lock."""
    global _installed
    if _installed:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    _wait_ms[:] = [int(store_retry_s() * 1000)] * 2

    def on_connect(dbapi_connection, connection_record) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute(f"PRAGMA busy_timeout = {_wait_ms[0]};")

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("PRAGMA busy_timeout"):  # MLflow's own, per session (see the module docstring)
            statement = f"PRAGMA busy_timeout = {_wait_ms[0]};"
        return statement, parameters

    event.listen(Pool, "connect", on_connect)
    event.listen(Engine, "before_cursor_execute", on_execute, retval=True)
    # MLflow logs each failed session with its traceback; trainlab reports a lost store in one line.
    logging.getLogger("mlflow.store.db.utils").addFilter(lambda record: "SQLAlchemy database error" not in record.getMessage())
    _installed = True


def give_up() -> None:
    """The store was waited for once and did not come back: the writes that follow while the run ends
    (callbacks, the logger's last flush) fail at once instead of waiting the whole window again each.
    :func:`keep_waiting` restores the window (a study worker goes on to its next trial)."""
    if _wait_ms[0]:
        _wait_ms[1], _wait_ms[0] = _wait_ms[0], 0


def keep_waiting() -> None:
    if not _wait_ms[0]:
        _wait_ms[0] = _wait_ms[1]


def is_store_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the store is away, rather than that a write was wrong."""
    import sqlalchemy.exc

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlite3.OperationalError)):
            return True
        if getattr(exc, "error_code", None) == "TEMPORARILY_UNAVAILABLE" or "Max retries exceeded" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def store_lost(uri: str, run_id: str, cause: BaseException, checkpoint_dir: str | Path | None) -> StoreLost:
    """The one line for a run whose store went away, naming the checkpoint it keeps in its run folder
    (:mod:`trainlab.training.resume`): ``trainlab train --resume`` continues from it once the store is back."""
    from trainlab.secrets import mask_uri

    files = sorted(Path(checkpoint_dir).glob("*.ckpt"), key=lambda p: p.stat().st_mtime) if checkpoint_dir else []
    where = f"last checkpoint kept at {files[-1]}" if files else "no checkpoint had been written yet"
    reason = _root_reason(cause)
    return StoreLost(
        f"tracking store {mask_uri(uri)} did not answer for {store_retry_s():.0f} s ({reason}; set {STORE_RETRY_ENV} to wait longer); "
        f"{where}; run {run_id} is ended KILLED by the next trainlab command once the store is back (then: trainlab train --resume {run_id})"
    )


def _root_reason(exc: BaseException) -> str:
    while (exc.__cause__ or exc.__context__) is not None:
        exc = exc.__cause__ or exc.__context__
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
