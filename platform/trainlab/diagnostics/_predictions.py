"""The task's predictions on each test batch, for the prediction pictures, without a second forward pass when possible."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def split_batch(batch: Any) -> tuple[tuple[Any, ...], Any]:
    """``(inputs, target)``: batches are ``(x, y)`` or ``(x, lengths, y)``; the last element is the target."""
    if isinstance(batch, (tuple, list)) and len(batch) > 1:
        return tuple(batch[:-1]), batch[-1]
    return (batch,), None


class TestOutputs:
    """Captures what the task's own ``forward`` returned during ``test_step``; runs it only if the step did not call it.

    Example::

        outputs = TestOutputs()
        outputs.attach(pl_module)                         # on_test_epoch_start
        logits = outputs.of_batch(pl_module, batch)       # on_test_batch_end
        outputs.detach()                                  # on_test_epoch_end
    """

    def __init__(self) -> None:
        self._last: torch.Tensor | None = None
        self._handle = None

    def attach(self, module: nn.Module) -> None:
        self._handle = module.register_forward_hook(self._keep)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def of_batch(self, module: nn.Module, batch: Any) -> torch.Tensor:
        output, self._last = self._last, None
        if output is None:  # the step called its net directly, not forward: one extra forward on test data
            with torch.no_grad():
                output = _first_tensor(module(*split_batch(batch)[0]))
        return output.detach()

    def _keep(self, module: nn.Module, args, output) -> None:
        self._last = _first_tensor(output)


def _first_tensor(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((o for o in output if isinstance(o, torch.Tensor)), None)
    return None
