"""The user's own code a run used: the source files of its model and datamodule classes (their bases and the
nets inside the model too), each with its sha256, and the git state of the repository they live in.

trainlab's, Lightning's, torch's and any installed package's classes are versioned by the package list of
``environment.json``; what is left is the user's code, which no package version describes. It is recorded
under ``user_code`` in ``environment.json`` and the files are kept as run artifacts under ``code/``, so
``trainlab reproduce`` can name a file edited since the run. A class whose source cannot be read (defined
in a notebook, shipped without ``.py``) is listed as not captured, and the run cannot be labelled exact.

Example::

    code = capture_user_code(model, datamodule)
    code.to_json()  # {"files": [{"file": "models/wine.py", "sha256": "..."}], "git": {...}, "not_captured": []}
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Top-level packages whose classes are library code even when installed from a checkout (trainlab's zoo is).
LIBRARY_PACKAGES = ("trainlab", "lightning", "pytorch_lightning", "lightning_fabric", "torch", "torchmetrics", "builtins")
ARTIFACT_FOLDER = "code"


@dataclass
class UserCode:
    """Source files (``path`` as recorded: relative to the working directory when inside it) and their git state."""

    files: dict[str, Path] = field(default_factory=dict)  # recorded name -> file on disk
    digests: dict[str, str] = field(default_factory=dict)  # recorded name -> sha256
    git: dict[str, Any] | None = None
    not_captured: list[str] = field(default_factory=list)  # "module.Class (why)"

    def to_json(self) -> dict[str, Any]:
        return {
            "files": [{"file": name, "sha256": self.digests[name]} for name in sorted(self.files)],
            "git": self.git,
            "not_captured": self.not_captured,
        }

    def artifact_folder(self, name: str) -> str:
        """Where the file recorded as ``name`` is kept on the run: ``code/models`` for ``models/wine.py``."""
        parent = Path(name).parent
        if parent.is_absolute():  # outside the working directory: keep its folder's name only
            parent = Path("external") / parent.name
        return str(Path(ARTIFACT_FOLDER) / parent) if str(parent) != "." else ARTIFACT_FOLDER


def add_user_code(environment: dict[str, Any], model: Any, datamodule: Any) -> UserCode:
    """Add the user's code behind ``model`` and ``datamodule`` to a captured ``environment`` as ``user_code``
    and label it again (code not captured: not exact). Returns the :class:`UserCode`, whose files a run keeps."""
    from trainlab.tracking.environment import reproducibility

    code = capture_user_code(model, datamodule, known_repos=environment.get("code_repos"))
    environment["user_code"] = code.to_json()
    label, reasons = reproducibility(environment)
    environment["reproducibility"] = {"label": label, "reasons": reasons}
    return code


def capture_user_code(*objects: Any, known_repos: list[dict[str, Any]] | None = None) -> UserCode:
    """The user code behind ``objects`` (model and datamodule instances or classes).

    ``known_repos``: git states already taken (``environment["code_repos"]``), reused for files inside them
    instead of asking git again.
    """
    from trainlab.tracking.environment import code_state

    code = UserCode()
    for cls in user_classes(objects):
        try:
            source = inspect.getsourcefile(cls)
        except TypeError:
            source = None
        if not source or not Path(source).is_file():
            code.not_captured.append(f"{cls.__module__}.{cls.__qualname__} (no source file)")
            continue
        path = Path(source).resolve()
        name = recorded_name(path)
        if name in code.files:
            continue
        try:
            code.digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            code.not_captured.append(f"{cls.__module__}.{cls.__qualname__} ({exc.strerror or exc})")
            continue
        code.files[name] = path
    if code.files:
        repos = [repo for repo in known_repos or [] if repo.get("root")]
        first = next(iter(code.files.values()))
        holding = next((repo for repo in repos if first.is_relative_to(repo["root"])), None)
        if holding is None:
            found, _ = code_state([first.parent])
            holding = found[0] if found else None
        code.git = holding
    return code


def user_classes(objects: tuple[Any, ...] | list[Any]) -> list[type]:
    """Every class of ``objects``, their bases and (for modules) their submodules, that is not library code."""
    import torch

    seen: dict[type, None] = {}
    for obj in objects:
        classes = [obj if inspect.isclass(obj) else type(obj)]
        if isinstance(obj, torch.nn.Module):
            classes += [type(module) for module in obj.modules()]
        for cls in classes:
            for klass in inspect.getmro(cls):
                if klass not in seen and not is_library(klass):
                    seen[klass] = None
    return list(seen)


def is_library(cls: type) -> bool:
    """trainlab's, Lightning's, torch's, the standard library's or an installed package's class.

    Decided by the class's module file: a module without one (a notebook cell, ``python -c``, ``exec``) is
    user code that cannot be captured, not library code.
    """
    if cls.__module__.split(".")[0] in LIBRARY_PACKAGES or cls.__module__ in sys.builtin_module_names:
        return True
    file = getattr(sys.modules.get(cls.__module__), "__file__", None)
    if not file:
        return False
    path = Path(file).resolve()
    if "site-packages" in path.parts or "dist-packages" in path.parts:
        return True
    return path.is_relative_to(Path(sysconfig.get_paths()["stdlib"]).resolve())


def recorded_name(path: Path) -> str:
    """``path`` relative to the working directory when inside it (a project moved elsewhere compares equal), else absolute."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
