"""Loading a run's own checkpoints without unpickling code: ``torch.load(weights_only=True)``.

A checkpoint trainlab writes holds tensors and plain data. The one exception is the module's hyperparameters:
jsonargparse hands ``__init__`` its validated numbers as ``PositiveInt``, ``UnitFraction``, ... (subclasses of
``int``/``float``/``str``), and those are stored as such. They, and only they, are allowed on torch's safe
list while a checkpoint loads; anything else a checkpoint asks to import is refused by torch.

Example::

    weights = load_own_checkpoint(checkpoint.best_model_path)          # torch.load(..., weights_only=True)
    with own_checkpoint(checkpoint.best_model_path):
        trainer.test(model, datamodule=datamodule, ckpt_path="best", weights_only=True)
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

_PLAIN_TYPES_MODULE = "jsonargparse.typing"


def plain_value_types(path: str) -> list[type]:
    """The jsonargparse value types (subclasses of int, float, str) that the checkpoint at ``path`` holds."""
    import torch

    types = []
    for name in torch.serialization.get_unsafe_globals_in_checkpoint(path):
        module, _, attribute = name.rpartition(".")
        if module != _PLAIN_TYPES_MODULE:
            continue
        cls = getattr(importlib.import_module(module), attribute, None)
        if isinstance(cls, type) and issubclass(cls, (int, float, str)):
            types.append(cls)
    return types


@contextlib.contextmanager
def own_checkpoint(path: str | None) -> Iterator[None]:
    """While the block runs, ``torch.load(weights_only=True)`` accepts the plain value types of ``path``."""
    import torch

    allowed = plain_value_types(path) if path else []
    with torch.serialization.safe_globals(allowed):
        yield


def load_own_checkpoint(path: str) -> dict[str, Any]:
    """A checkpoint trainlab wrote, loaded on the CPU with ``weights_only=True``."""
    import torch

    with own_checkpoint(path):
        return torch.load(path, map_location="cpu", weights_only=True)
