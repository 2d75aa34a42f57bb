"""LightningCLI configs both ways: a ``--print_config`` dump trains with trainlab unchanged, and a run's
recorded config exports as a file ``LightningCLI`` accepts.

A LightningCLI ``fit`` dump holds what trainlab does its own way: ``ckpt_path``/``weights_only`` (the
arguments of ``trainer.fit``), ``trainer.logger`` (trainlab logs to MLflow). They are set aside with a
note instead of refused. The reverse drops trainlab's own sections (``tracking``, ``diagnostics``,
``monitor``, ``test``, ``study``, ``search_space``) and states the monitored metric as the
``ModelCheckpoint`` LightningCLI would need for the same checkpoint.

Example::

    document, notes = from_lightning_cli(yaml.safe_load(open("dumped.yaml")))
"""

from __future__ import annotations

import copy
from typing import Any

# Top-level keys a LightningCLI subcommand dump adds (arguments of trainer.fit/validate/test/predict).
SUBCOMMAND_KEYS = ("ckpt_path", "weights_only", "verbose", "return_predictions")
TRAINLAB_SECTIONS = ("tracking", "diagnostics", "monitor", "test", "measure", "study", "search_space")


def from_lightning_cli(document: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``document`` without what trainlab does itself, and one note per thing set aside."""
    document = copy.deepcopy(document)
    notes = []
    present = [key for key in SUBCOMMAND_KEYS if key in document]
    if present:
        values = {key: document.pop(key) for key in present}
        resume = f" (ckpt_path {values['ckpt_path']!r} not loaded)" if values.get("ckpt_path") else ""
        notes.append(f"{', '.join(present)} (LightningCLI's fit arguments) ignored: trainlab trains every run from fresh weights{resume}")
    trainer = document.get("trainer")
    if isinstance(trainer, dict):
        if "logger" in trainer:
            logger = trainer.pop("logger")
            named = f" (not {_name(logger)})" if logger not in (None, False, True) else ""
            notes.append(f"trainer.logger ignored: trainlab logs every run to MLflow itself{named}")
        unbounded = trainer.get("max_steps", -1) in (-1, None) and trainer.get("max_time") is None
        if "max_epochs" in trainer and trainer["max_epochs"] is None and unbounded:
            notes.append("trainer.max_epochs is null: as in Lightning, training stops after 1000 epochs (set max_epochs, max_steps or max_time)")
    return document, notes


def to_lightning_cli(document: dict[str, Any], monitor: Any = None) -> dict[str, Any]:
    """A recorded run config as a LightningCLI config: trainlab's sections dropped; ``monitor`` (a
    :class:`trainlab.contract.Monitor`) becomes a ModelCheckpoint on the same metric."""
    exported = {key: copy.deepcopy(value) for key, value in document.items() if key not in TRAINLAB_SECTIONS}
    if monitor is not None and monitor.metric:
        trainer = exported.setdefault("trainer", {})
        callbacks = list(trainer.get("callbacks") or [])
        if not any("ModelCheckpoint" in str((c or {}).get("class_path", "")) for c in callbacks if isinstance(c, dict)):
            callbacks.append({
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"monitor": monitor.metric, "mode": monitor.mode, "save_top_k": 1},
            })
        trainer["callbacks"] = callbacks
    return exported


def _name(value: Any) -> str:
    return str(value.get("class_path", value)) if isinstance(value, dict) else str(value)
