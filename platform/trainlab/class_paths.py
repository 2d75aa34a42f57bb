"""Class paths as experiment files and launch files write them: import one, and list what its ``__init__`` takes.

jsonargparse resolves short names (``MLPClassifier``) when it parses a config; these helpers serve the
places that hold a full path already (``trainlab.models.MLPClassifier``, ``package.module:Class``).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any


def import_class(class_path: str) -> Any:
    """The object at ``package.module.Name`` or ``package.module:Name``; ImportError/AttributeError if absent."""
    module, _, name = class_path.rpartition(":") if ":" in class_path else class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def find_class(class_path: Any) -> type | None:
    """Like :func:`import_class`, but None for a short name (resolved later by jsonargparse) or a missing class."""
    if not isinstance(class_path, str) or "." not in class_path:
        return None
    try:
        return import_class(class_path)
    except (ImportError, AttributeError):
        return None


def init_parameters(cls: type) -> tuple[set[str], bool]:
    """``(names, open_ended)``: the keyword arguments ``cls(...)`` accepts, following ``**kwargs`` up the
    class hierarchy as jsonargparse does; ``open_ended`` when some ``__init__`` on the way takes ``**kwargs``."""
    names: set[str] = set()
    open_ended = False
    for klass in inspect.getmro(cls):
        if "__init__" not in vars(klass):
            continue
        try:
            params = list(inspect.signature(klass.__init__).parameters.values())
        except (TypeError, ValueError):  # a builtin without a signature
            return names, True
        names.update(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self")
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
        open_ended = True
    return names, open_ended


def class_paths_in(document: Any, key: str = "") -> list[tuple[str, str]]:
    """``(dotted key, class path)`` of every ``class_path`` in a config document: what loading it will import
    and run (an experiment file is code). Example::

        class_paths_in({"model": {"class_path": "MLPClassifier"}})   # [("model", "MLPClassifier")]
    """
    found: list[tuple[str, str]] = []
    if isinstance(document, dict):
        if isinstance(document.get("class_path"), str):
            found.append((key or "(top level)", document["class_path"]))
        for name, value in document.items():
            found += class_paths_in(value, f"{key}.{name}" if key else str(name))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += class_paths_in(value, f"{key}[{index}]")
    return found

