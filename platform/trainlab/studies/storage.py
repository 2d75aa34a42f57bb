"""Where a study lives: the default journal file next to ``mlflow.db``, or any Optuna RDB URL.

``--storage`` takes an RDB URL (``postgresql://user@host/db``, ``sqlite:///optuna.db``, ``mysql://…``)
or a file path, which is an Optuna journal file. The default is ``optuna_journal.log`` in the directory
of a ``sqlite:///…mlflow.db`` tracking store (else the working directory): Optuna's journal storage is
made for several processes appending to one file, so ``--jobs 4`` needs no database server.

Before a study writes anything, :func:`check_study_stores` checks both the tracking store and the study
storage, so a bad URI, an unreachable server or a folder that cannot be written is one line (exit 2) and
leaves neither store touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import zlib
from pathlib import Path
from typing import Iterator

from trainlab.errors import ConfigError
from trainlab.tracking.store import DATABASE_SCHEMES, check_database_server, check_sqlite_file, check_tracking_store, scheme, sqlite_path

DEFAULT_JOURNAL = "optuna_journal.log"
STORAGE_EXAMPLES = "a journal file path, or an RDB URL such as postgresql://user@host/db or sqlite:///optuna.db"
# Each worker holds at most two connections to a database server (one in use, one for the occasional
# overlap), so N workers need about 3 N + a few: see README ("How many connections"). Two kept
# connections rather than one plus an overflow: an overflow connection is closed and reopened on every
# overlap, and the churn shows the server more backends than the pool holds.
RDB_ENGINE_KWARGS = {"pool_size": 2, "max_overflow": 0, "pool_pre_ping": True}


def default_storage_url(tracking_uri: str) -> str:
    """The journal file beside a SQLite tracking store, else in the working directory (absolute path)."""
    directory = Path.cwd()
    path = sqlite_path(tracking_uri)
    if path is not None:
        directory = Path(path).resolve().parent
    return str(directory / DEFAULT_JOURNAL)


def resolve_storage_url(explicit: str | None, tracking_uri: str) -> str:
    if not explicit:
        return default_storage_url(tracking_uri)
    if is_rdb_url(explicit):
        return explicit
    return str(Path(explicit).expanduser().resolve())


def is_rdb_url(url: str) -> bool:
    return "://" in url


def check_storage_url(url: str, *, create: bool = True, key: str = "--storage") -> None:
    """Raise :class:`ConfigError` (one line, ``url`` named) unless a study can be kept in ``url``; writes nothing.

    A journal file: its folder exists (or can be made) and this user can write it, no folder on its path is
    a regular file. An RDB URL: a known scheme; a SQLite file in a writable folder; a PostgreSQL/MySQL
    server that answers, with the database present. ``create=False`` (reading): the storage must exist.
    """
    if is_rdb_url(url):
        kind = scheme(url)
        if kind not in DATABASE_SCHEMES:
            raise ConfigError(key, url, f"{STORAGE_EXAMPLES} (unknown scheme {kind}://)")
        path = sqlite_path(url)
        if kind == "sqlite":
            if path is not None:
                check_sqlite_file(path, url, create=create, key=key)
        else:
            check_database_server(url, key=key)
        return
    journal = Path(url)
    if journal.is_dir():
        raise ConfigError(key, url, f"a journal file path, not a directory (e.g. {journal / DEFAULT_JOURNAL})")
    folder = _existing_ancestor(journal.parent)
    if not folder.is_dir():
        raise ConfigError(key, url, f"a path whose folders are folders ({folder} is a file)")
    if journal.exists():
        if not os.access(journal, os.R_OK | os.W_OK) or not os.access(journal.parent, os.W_OK | os.X_OK):
            raise ConfigError(key, url, "a journal file this user can read and write, in a folder it can write (for the lock files)", hint="permission denied")
        return
    if not create:
        raise ConfigError(key, url, "an existing study storage (no such file; nothing was stored there yet)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(key, url, f"a journal file in a folder this user can write ({folder} is not writable)")


def check_study_stores(tracking_uri: str, storage_url: str) -> None:
    """Check the tracking store and the study storage, both before either is written."""
    check_tracking_store(tracking_uri, create=True)
    check_storage_url(storage_url, create=True)


def open_storage(url: str):
    """The Optuna storage object for ``url`` (journal file or RDB).

    A journal file is repaired first: a partial last record (a crash or a full disk mid-write) is dropped.
    Database servers get a small connection pool (:data:`RDB_ENGINE_KWARGS`).
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    from trainlab.studies.journal_lock import ThreadAwareLock

    check_storage_url(url)
    if is_rdb_url(url):
        from trainlab.fork_safety import remember_engines
        from trainlab.tracking.sqlite_wal import use_wal_for_sqlite

        remember_engines()  # its pooled connections are closed before a study forks a worker
        use_wal_for_sqlite()
        engine_kwargs = {} if scheme(url) == "sqlite" else dict(RDB_ENGINE_KWARGS)
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    try:
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(url, lock_obj=ThreadAwareLock(JournalFileSymlinkLock(url)))  # Optuna's default lock
        dropped = repair_journal_tail(url)
    except PermissionError:
        raise ConfigError("--storage", url, "a journal file in a folder this user can write", hint="permission denied") from None
    if dropped:
        print(
            f"trainlab: journal {url}: dropped a partial last record ({dropped} bytes, from an interrupted write); continuing",
            file=sys.stderr,
            flush=True,
        )
    return optuna.storages.JournalStorage(backend)


def repair_journal_tail(path: str) -> int:
    """Drop a partial final record from an Optuna journal file, under the journal's own lock; return the bytes dropped.

    Optuna skips a last line without a newline when it reads, but its next append would land after those
    bytes and make one unreadable line in the middle (JSONDecodeError for every later open). Only the last
    record can be partial: every append is one write of whole lines under the same lock.
    """
    from optuna.storages.journal import JournalFileSymlinkLock
    from optuna.storages.journal._file import get_lock_file  # the lock Optuna's appends hold

    if _tail_is_whole(path):
        return 0  # the usual case: no lock taken, nothing written
    with get_lock_file(JournalFileSymlinkLock(path)):
        with open(path, "rb+") as file:
            size = os.fstat(file.fileno()).st_size
            start = _last_line_start(file, size)
            if _is_whole(file, start, size):
                return 0  # another process repaired it while we waited for the lock
            file.truncate(start)
            file.flush()
            os.fsync(file.fileno())
            return size - start


def _tail_is_whole(path: str) -> bool:
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        return _is_whole(file, _last_line_start(file, size), size)


def _is_whole(file, start: int, size: int) -> bool:
    """The last line, ``[start, size)``, is a complete record (or the file is empty)."""
    if size == 0:
        return True
    file.seek(start)
    last = file.read(size - start)
    return last.endswith(b"\n") and _is_record(last)


def _last_line_start(file, size: int, chunk: int = 1 << 16) -> int:
    """Offset just after the newline that precedes the file's last line (0 if it has a single line)."""
    end = size - 1  # a final newline ends the last line; it does not start it
    while end > 0:
        begin = max(0, end - chunk)
        file.seek(begin)
        found = file.read(end - begin).rfind(b"\n")
        if found >= 0:
            return begin + found + 1
        end = begin
    return 0


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (the folder that would hold what mkdir makes)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class ClaimLock:
    """Serialises "count the trials, then ask for one" across every worker of a study.

    Without it two workers that see 19 of 20 trials done would both start a 20th (and could draw the
    same seed). A journal file or SQLite storage is guarded by a file lock beside it, PostgreSQL by an
    advisory lock on the study name; both are released by the OS or the server if the holder dies.
    Other RDB backends run without it and may exceed ``n_trials`` by at most the number of workers - 1.
    """

    def __init__(self, url: str, study_name: str) -> None:
        check_storage_url(url)  # the lock is the first thing a study writes beside its storage
        self.url = url
        self.study_name = study_name
        self._file_lock = None
        self._engine = None
        path = url if not is_rdb_url(url) else sqlite_path(url)
        if path is not None:
            from filelock import FileLock

            self._file_lock = FileLock(f"{path}.claim.lock")
        elif scheme(url) in ("postgresql", "postgres"):
            import sqlalchemy

            self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self._file_lock is not None:
            try:
                self._file_lock.acquire()
            except PermissionError:
                raise ConfigError("--storage", self.url, "a study storage in a folder this user can write", hint=f"cannot create {self._file_lock.lock_file}") from None
            try:
                yield
            finally:
                self._file_lock.release()
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
