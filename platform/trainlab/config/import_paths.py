"""Where the user's classes are imported from, and one clear line when a class path cannot be used.

As with ``python -m`` and LightningCLI scripts, the working directory is importable, and so is the
experiment file's own folder (a project keeps ``models/mine.py`` next to ``mine.yaml``). Both go on
``sys.path`` for this process and on ``PYTHONPATH`` for every process it starts (study workers, process
groups, Lightning's DDP ranks), so a class path resolves the same everywhere.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from trainlab.errors import ConfigError

IMPORT_HINT = (
    "the experiment file's folder and the working directory are importable — put the package there or add it to PYTHONPATH"
)
_BASES = {"model": "LightningModule", "data": "LightningDataModule"}


def make_importable(*folders: str | Path) -> None:
    """Put ``folders`` (resolved, existing ones) first on ``sys.path`` and on ``PYTHONPATH`` for child processes."""
    paths = [str(Path(folder).resolve()) for folder in folders if Path(folder).is_dir()]
    known = os.environ.get("PYTHONPATH", "").split(os.pathsep) if os.environ.get("PYTHONPATH") else []
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    added = [path for path in dict.fromkeys(paths) if path not in known]
    if added:
        os.environ["PYTHONPATH"] = os.pathsep.join(added + known)


def check_class_section(key: str, section: Any) -> None:
    """Refuse, in one line, a ``model``/``data`` section that names no class (LightningCLI's flat form), a class
    path that does not import, or a class that is not a LightningModule/LightningDataModule."""
    if isinstance(section, dict) and "class_path" not in section:
        raise ConfigError(
            key,
            section,
            "class_path and init_args",
            hint=f"LightningCLI's flat form names no class: add class_path: your_package.YourClass and move the values under init_args",
        )
    class_path = section.get("class_path") if isinstance(section, dict) else section
    if not isinstance(class_path, str) or not ("." in class_path or ":" in class_path):
        return  # a short name (MLPClassifier): jsonargparse resolves it among trainlab's classes
    cls = import_user_class(f"{key}.class_path", class_path)
    import lightning as L

    base = getattr(L, _BASES[key])
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{key}.class_path", class_path, f"a subclass of lightning.{_BASES[key]}")


def import_user_class(key: str, class_path: str) -> Any:
    """The class at ``class_path``; a ConfigError naming the module that failed and how to fix it."""
    from trainlab.class_paths import import_class

    try:
        return import_class(class_path)
    except ModuleNotFoundError as exc:
        raise ConfigError(key, class_path, "an importable class", hint=f"{exc}; {IMPORT_HINT}") from None
    except AttributeError as exc:
        raise ConfigError(key, class_path, "an importable class", hint=str(exc)) from None
    except Exception as exc:  # the user's module itself raised while importing (SyntaxError, ...)
        raise ConfigError(key, class_path, "an importable class", hint=f"importing it raised {type(exc).__name__}: {exc}") from None
