"""A new SQLite tracking store, copied from an empty one MLflow built before.

MLflow builds a new store by running each of its schema migrations: 1.5 s, the longest step of a first
``trainlab train`` in a new folder. The result depends only on MLflow's version, so one empty store per
version is kept in the user's cache (``$XDG_CACHE_HOME/trainlab``, else ``~/.cache/trainlab``; set
``TRAINLAB_CACHE`` to move it) and copied. It holds MLflow's tables without the "Default" experiment, whose
artifact location depends on the folder: MLflow adds that experiment itself when it first opens the copy.
Where the cache cannot be written, MLflow builds the store as usual.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

CACHE_ENV = "TRAINLAB_CACHE"


def seed_new_sqlite_store(path: str) -> None:
    """Make the absent SQLite file ``path`` a copy of the empty store; nothing when it exists or on any error."""
    target = Path(path)
    if target.exists() or not target.parent.is_dir():
        return
    with contextlib.suppress(OSError, sqlite3.Error):
        template = _template()
        copy = target.with_name(f".{target.name}.{os.getpid()}.new")
        try:
            shutil.copyfile(template, copy)
            os.link(copy, target)  # atomic, and never over a store another process made meanwhile
        finally:
            copy.unlink(missing_ok=True)


def _template() -> Path:
    import mlflow

    folder = Path(os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trainlab")
    template = folder / f"mlflow-{mlflow.__version__}-empty.db"
    if template.exists():
        return template
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".building-") as tmp:
        building = Path(tmp) / "store.db"
        _build_empty_store(building)
        os.replace(building, template)  # whole or not at all, for processes building it at the same time
    return template


def _build_empty_store(path: Path) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{path}", str(path.parent / "artifacts"))
    store.engine.dispose()
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("DELETE FROM experiments WHERE experiment_id = 0")
