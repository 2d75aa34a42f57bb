"""Stop at the first NaN/inf loss or gradient, and say at which step and in which layer it appeared."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from trainlab.diagnostics._layers import ParameterLayers
from trainlab.diagnostics._tracking import set_tags

NON_FINITE_TAGS = ("trainlab.non_finite.step", "trainlab.non_finite.layer")


class NonFiniteError(RuntimeError):
    """Training produced a NaN or infinite loss or gradient; the message names the step and the layer."""


class NonFiniteGuard(Callback):
    """Ends training at the first step whose loss or gradients are not finite, with the step and the layer.

    Each optimiser step costs one check of the loss and the per-layer gradient norms (one host sync).
    When it fails, the batch is run forward again with hooks on every module to find the first layer
    whose output is not finite; if the forward pass was finite, the layer is the first one backpropagation
    reached with a non-finite gradient. The run is tagged ``trainlab.non_finite.step`` and
    ``trainlab.non_finite.layer`` and :class:`NonFiniteError` is raised, so the training path ends the run
    FAILED with the message as its reason (a study marks the trial failed and goes on).

    Example::

        trainer = Trainer(callbacks=[NonFiniteGuard()])
        # optimizer lr far too high -> NonFiniteError: non-finite loss (nan) at training step 14 (epoch 1,
        # batch 2); first non-finite value in the forward pass: output of net.layers.3 (Linear)
    """

    def __init__(self) -> None:
        self.layers: ParameterLayers | None = None
        self._batch: Any = None
        self._batch_idx = 0
        self._loss: torch.Tensor | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.layers = ParameterLayers.of(pl_module)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._batch, self._batch_idx = batch, batch_idx  # a reference, kept for the forward replay on failure

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        self._loss = loss.detach()

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        total = self.layers.step_grad_norms(trainer, optimizer).sum()
        if self._loss is not None:
            total = total + self._loss.float().sum()
        if bool(torch.isfinite(total)):
            return
        finding = self._diagnose(trainer, pl_module)
        if finding is None:  # the norm overflowed but every value is finite: large, not broken
            return
        message, layer = finding
        set_tags(trainer, dict(zip(NON_FINITE_TAGS, (trainer.global_step, layer))))
        raise NonFiniteError(message)

    def _diagnose(self, trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[str, str] | None:
        where = f"training step {trainer.global_step} (epoch {trainer.current_epoch}, batch {self._batch_idx})"
        loss = self._loss
        if loss is not None and not bool(torch.isfinite(loss).all()):
            found = f"non-finite loss ({loss.float().sum().item()}) at {where}"
            origin = _first_non_finite_output(pl_module, self._batch)
            if origin is None:
                return f"{found}; every layer's output was finite, so the loss function produced it", "loss function"
            source = "the input batch itself" if origin == "input batch" else f"output of {origin}"
            return f"{found}; first non-finite value in the forward pass: {source}", origin
        params = self.layers.params
        bad = sorted({self.layers.layer_of[j] for j, p in enumerate(params) if p.grad is not None and not bool(torch.isfinite(p.grad).all())})
        if not bad:
            return None
        # Backpropagation runs from the output: the last of these layers is where it began.
        first = self.layers.names[bad[-1]]
        return f"non-finite gradient at {where}, first in layer {first} (found in {len(bad)} layer(s)); the loss was finite", first


def _first_non_finite_output(pl_module: nn.Module, batch: Any) -> str | None:
    """Run the batch forward again with hooks; name the first module whose output holds NaN/inf.

    ``"input batch"`` when the input itself does; None when every output was finite.
    """
    inputs = tuple(batch[:-1]) if isinstance(batch, (tuple, list)) and len(batch) > 1 else (batch,)
    if any(isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in inputs):
        return "input batch"
    names = {module: name for name, module in pl_module.named_modules()}
    found: list[str] = []

    def hook(module: nn.Module, args, output) -> None:
        if not found and isinstance(output, torch.Tensor) and output.is_floating_point() and not bool(torch.isfinite(output).all()):
            found.append(f"{names[module]} ({type(module).__name__})")

    handles = [m.register_forward_hook(hook) for m in pl_module.modules() if next(m.children(), None) is None]
    try:
        with torch.no_grad():
            pl_module(*inputs)
    except Exception:  # the replay only serves the message; the original failure is what gets reported
        pass
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else None
