"""A net's trainable parameters grouped by layer, and per-layer gradient norms in a handful of kernels."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ParameterLayers:
    """The modules that own trainable parameters ("layers"), in definition order.

    ``names[i]`` reads like ``net.layers.1 (Linear)``; ``layer_of[j]`` is the layer index of ``params[j]``
    and ``membership`` the (layers × params) 0/1 matrix of the same fact, on the parameters' device.
    """

    names: list[str]
    params: list[nn.Parameter]
    layer_of: list[int]
    membership: torch.Tensor

    @classmethod
    def of(cls, module: nn.Module) -> "ParameterLayers":
        names: list[str] = []
        params: list[nn.Parameter] = []
        layer_of: list[int] = []
        for name, child in module.named_modules():
            own = [p for p in child.parameters(recurse=False) if p.requires_grad]
            if not own:
                continue
            names.append(f"{name or 'model'} ({type(child).__name__})")
            params.extend(own)
            layer_of.extend([len(names) - 1] * len(own))
        device = params[0].device if params else torch.device("cpu")
        membership = torch.zeros(len(names), len(params), device=device)
        membership[layer_of, range(len(params))] = 1.0
        return cls(names, params, layer_of, membership)

    def __len__(self) -> int:
        return len(self.names)

    def short_name(self, index: int) -> str:
        return self.names[index].split(" (")[0]

    def norms(self, tensors: list[torch.Tensor | None]) -> torch.Tensor:
        """Per-layer L2 norm of ``tensors`` (one per parameter; ``None`` counts as zero), on the params' device."""
        present = [i for i, t in enumerate(tensors) if t is not None]
        if not present:
            return torch.zeros(len(self.names), device=self.membership.device)
        # One fused multi-tensor kernel instead of a norm call per parameter (what clip_grad_norm_ uses too).
        # Summed per layer by masking, not index_add_ (nondeterministic on GPUs) nor a product with the 0/1
        # matrix (0 × inf would smear one layer's overflow over all layers as NaN).
        per_tensor = torch.stack(torch._foreach_norm([tensors[i] for i in present])).float()
        membership = self.membership if len(present) == len(tensors) else self.membership[:, present]
        squares = torch.where(membership > 0, per_tensor.square(), 0.0)
        return squares.sum(dim=1).sqrt()

    def grad_norms(self) -> torch.Tensor:
        return self.norms([p.grad for p in self.params])

    def step_grad_norms(self, trainer, optimizer) -> torch.Tensor:
        """:meth:`grad_norms` before this optimizer step, computed once for all callbacks that ask in it.

        NonFiniteGuard and GradientFlowMonitor both read every step's norms; for a small net the second
        pass was 4% of an epoch. Shared through the module, keyed by step and optimizer: both callbacks
        group the same module's parameters the same way (``ParameterLayers.of`` at train start).
        """
        key = (trainer.global_step, trainer.current_epoch, id(optimizer), len(self.params))
        module = trainer.lightning_module
        cached = _STEP_NORMS.get(module)
        if cached is not None and cached[0] == key:
            return cached[1]
        norms = self.grad_norms()
        _STEP_NORMS[module] = (key, norms)
        return norms


# The latest step's per-layer gradient norms of each module being trained (see ParameterLayers.step_grad_norms).
_STEP_NORMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
