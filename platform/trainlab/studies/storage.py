"""Where a study lives: the default journal file next to ``mlflow.db``, or any Optuna RDB URL.

``--storage`` takes an RDB URL (``postgresql://user@host/db``, ``sqlite:///optuna.db``, ``mysql://…``)
or a file path, which is an Optuna journal file. The default is ``optuna_journal.log`` in the directory
of a ``sqlite:///…mlflow.db`` tracking store (else the working directory): Optuna's journal storage is
made for several processes appending to one file, so ``--jobs 4`` needs no database server.
"""

from __future__ import annotations

import contextlib
import zlib
from pathlib import Path
from typing import Iterator

DEFAULT_JOURNAL = "optuna_journal.log"


def default_storage_url(tracking_uri: str) -> str:
    """The journal file beside a SQLite tracking store, else in the working directory (absolute path)."""
    directory = Path.cwd()
    if tracking_uri.startswith("sqlite:///"):
        directory = Path(tracking_uri[len("sqlite:///") :]).expanduser().resolve().parent
    return str(directory / DEFAULT_JOURNAL)


def resolve_storage_url(explicit: str | None, tracking_uri: str) -> str:
    if not explicit:
        return default_storage_url(tracking_uri)
    if is_rdb_url(explicit):
        return explicit
    return str(Path(explicit).expanduser().resolve())


def is_rdb_url(url: str) -> bool:
    return "://" in url


def open_storage(url: str):
    """The Optuna storage object for ``url`` (journal file or RDB)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if is_rdb_url(url):
        return optuna.storages.RDBStorage(url)
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(url))


def public_url(url: str) -> str:
    """``url`` safe to record in tags and print: the password of an RDB URL removed."""
    if not is_rdb_url(url):
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url)._replace(password=None).render_as_string(hide_password=False)  # URL is a NamedTuple
    except Exception:
        return url.split("://", 1)[0] + "://…"


class ClaimLock:
    """Serialises "count the trials, then ask for one" across every worker of a study.

    Without it two workers that see 19 of 20 trials done would both start a 20th (and could draw the
    same seed). A journal file or SQLite storage is guarded by a file lock beside it, PostgreSQL by an
    advisory lock on the study name; both are released by the OS or the server if the holder dies.
    Other RDB backends run without it and may exceed ``n_trials`` by at most the number of workers - 1.
    """

    def __init__(self, url: str, study_name: str) -> None:
        self.url = url
        self.study_name = study_name
        self._file_lock = None
        self._engine = None
        if not is_rdb_url(url) or url.startswith("sqlite:///"):
            from filelock import FileLock

            path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else url
            self._file_lock = FileLock(f"{path}.claim.lock")
        elif url.startswith(("postgresql", "postgres")):
            import sqlalchemy

            self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self._file_lock is not None:
            with self._file_lock:
                yield
        elif self._engine is not None:
            import sqlalchemy

            key = zlib.crc32(f"trainlab-study:{self.study_name}".encode())
            with self._engine.connect() as connection:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
                try:
                    yield
                finally:
                    connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        else:
            yield
