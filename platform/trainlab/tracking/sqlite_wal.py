"""SQLite stores in write-ahead-log mode: a commit syncs one log file, not a database and its journal.

MLflow and Optuna commit after every write to a SQLite store (a run's params, an epoch's metrics, a
heartbeat, a trial's state). With SQLite's default rollback journal each commit syncs the database and
its journal: 16 ms on a busy machine's disk, a few tenths of a second of every short study trial. In WAL
mode a commit appends to the log and syncs it (2 ms), as durable (``synchronous=FULL``), and readers (the
MLflow UI) no longer block writers. WAL needs memory shared between the processes that open the store,
which network file systems do not provide: a store on NFS, CIFS, Lustre and the like keeps its journal.

An interrupt (Ctrl-C, SIGTERM) that lands while a query's rows are read leaves that statement unfinished
(the traceback keeps its cursor), and its pooled connection keeps the snapshot it read: a later write on that
connection fails at once with "database is locked" once anyone else has written. So a connection pooled
before an interrupt is not used again (:func:`forget_pooled_connections`): the run can still end KILLED.
"""

from __future__ import annotations

import functools
import os
import sqlite3

_NETWORK_FILE_SYSTEMS = ("nfs", "nfs4", "cifs", "smb", "smbfs", "smb3", "lustre", "gpfs", "beegfs", "ceph", "glusterfs", "fuse.sshfs", "9p", "afs")
_watching = False
_GENERATION = "trainlab.generation"  # a pooled connection's record: the interrupts seen when it was opened
_interrupts = 0


def use_wal_for_sqlite() -> None:
    """Put every SQLite store this process connects to through SQLAlchemy in WAL mode (idempotent)."""
    global _watching
    if _watching:
        return
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    event.listen(Pool, "connect", _on_connect)
    event.listen(Pool, "checkout", _on_checkout)
    _watching = True


def forget_pooled_connections() -> None:
    """Called by the interrupt handlers (:func:`trainlab.training.processes.interrupt_on_sigterm`): every SQLite
    connection pooled until now is replaced by a fresh one when next checked out. Safe in a signal handler."""
    global _interrupts
    _interrupts += 1


def _on_checkout(connection, record, _proxy) -> None:
    if record.info.get(_GENERATION, _interrupts) != _interrupts:
        from sqlalchemy.exc import DisconnectionError

        raise DisconnectionError("pooled before an interrupt")  # SQLAlchemy's pool opens a fresh connection instead


def _on_connect(connection, record) -> None:
    if not isinstance(connection, sqlite3.Connection):
        return
    record.info[_GENERATION] = _interrupts
    path = next((row[2] for row in connection.execute("PRAGMA database_list") if row[1] == "main"), "")
    if not path or on_network_file_system(path):
        return
    try:
        connection.execute("PRAGMA journal_mode=WAL")  # stays with the file; a no-op once set
        connection.execute("PRAGMA synchronous=FULL")  # each commit synced: nothing committed is lost to a crash
    except sqlite3.OperationalError:  # another process holds the store locked: the next connection sets it
        pass


@functools.lru_cache(maxsize=64)
def on_network_file_system(path: str) -> bool:
    """Whether ``path`` lies on a network file system (read from /proc/mounts; False where there is none)."""
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            entries = [line.split()[1:3] for line in mounts if len(line.split()) > 2]
    except OSError:
        return False
    real = os.path.realpath(path)
    best = ("", "")
    for mount_point, kind in entries:
        mount_point = mount_point.replace("\\040", " ")
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best[0]):
            best = (mount_point, kind)
    return best[1] in _NETWORK_FILE_SYSTEMS
