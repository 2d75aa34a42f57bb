"""Small building blocks shared by the nets: activations by name, weight initialisation by name."""

from __future__ import annotations

from typing import Literal

from torch import nn

Activation = Literal["relu", "tanh", "sigmoid", "gelu", "leaky_relu", "elu", "silu"]
Init = Literal["default", "uniform", "normal", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal"]

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}


def make_activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}") from None


def initialize_weights(module: nn.Module, scheme: str) -> None:
    """Re-initialise every Linear/Conv/RNN weight matrix with ``scheme``; biases start at zero.

    'default' keeps PyTorch's own initialisation (Kaiming-uniform for Linear/Conv).
    """
    if scheme == "default":
        return
    inits = {
        "uniform": lambda w: nn.init.uniform_(w, -0.05, 0.05),
        "normal": lambda w: nn.init.normal_(w, 0.0, 0.05),
        "xavier_uniform": nn.init.xavier_uniform_,
        "xavier_normal": nn.init.xavier_normal_,
        "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
        "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
        "orthogonal": nn.init.orthogonal_,
    }
    if scheme not in inits:
        raise ValueError(f"unknown init {scheme!r}; expected one of {sorted(inits) + ['default']}")
    for name, param in module.named_parameters():
        if param.dim() >= 2 and "weight" in name:
            inits[scheme](param)
        elif "bias" in name:
            nn.init.zeros_(param)
