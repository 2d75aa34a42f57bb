"""Reading experiment files and applying ``key.path=value`` overrides."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainlab.config.lightning_cli import from_lightning_cli
from trainlab.errors import ConfigError

RUN_SECTIONS = ("seed_everything", "model", "data", "optimizer", "lr_scheduler", "trainer", "tracking", "diagnostics", "monitor", "test", "measure")
STUDY_SECTIONS = ("study", "search_space")
LAUNCHER_SECTIONS = ("launcher",)  # where the work runs (launcher.slurm); not part of the run or the study


@dataclass
class Experiment:
    """An experiment file split into its run config and optional study sections."""

    run: dict[str, Any]
    study: dict[str, Any] | None = None
    search_space: dict[str, Any] | None = None
    source: Path | None = None
    notes: list[str] = field(default_factory=list)  # what a LightningCLI dump held that trainlab set aside
    launcher: dict[str, Any] | None = None  # the launcher section as written (checked by the launcher that uses it)


def load_experiment(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Experiment:
    """Read ``path``; apply overrides (``model.init_args.dropout=0.2``) to the whole file, study sections included."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), expected="an existing experiment file (YAML)", hint="check the path")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(where, expected="valid YAML", hint=str(getattr(exc, "problem", exc))) from None
    if not isinstance(document, dict):
        raise ConfigError(str(path), type(document).__name__, "a YAML mapping with sections such as model, data, trainer")
    document = apply_overrides(document, overrides)
    document, notes = from_lightning_cli(document)
    sections = RUN_SECTIONS + STUDY_SECTIONS + LAUNCHER_SECTIONS
    unknown = [key for key in document if key not in sections]
    if unknown:
        raise ConfigError(unknown[0], expected=f"a top-level section among {', '.join(sections)}")
    run = {key: value for key, value in document.items() if key in RUN_SECTIONS}
    return Experiment(
        run=run, study=document.get("study"), search_space=document.get("search_space"), source=path, notes=notes,
        launcher=document.get("launcher"),
    )


def apply_overrides(document: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of ``document`` with each ``dotted.key=value`` set; values are parsed as YAML."""
    result = copy.deepcopy(document)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(item, expected="an override of the form dotted.key=value, e.g. trainer.max_epochs=5")
        try:
            value = yaml.safe_load(text) if text != "" else None
        except yaml.YAMLError:
            raise ConfigError(key, text, "a YAML value (quote strings that contain ':' or '#')") from None
        set_dotted(result, key, value)
    return result


def set_dotted(document: dict[str, Any], key: str, value: Any) -> None:
    """Set ``document[a][b][c] = value`` for ``key='a.b.c'``, creating intermediate mappings."""
    parts = key.split(".")
    node = document
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(".".join(parts[: depth + 1]), child, "a mapping to set keys inside")
        node = child
    node[parts[-1]] = value


def get_dotted(document: dict[str, Any], key: str, default: Any = None) -> Any:
    node: Any = document
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node
