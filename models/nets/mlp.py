"""A plain multi-layer perceptron: Linear → [BatchNorm] → activation → [Dropout], repeated."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trainlab.models.nets.layers import initialize_weights, make_activation


class MLP(nn.Module):
    """Maps a flat feature vector (any input shape is flattened) to ``out_features`` logits or values.

    Example::

        net = MLP(in_features=64, hidden_sizes=[128, 64], out_features=10, dropout=0.1)
        net(torch.randn(32, 8, 8)).shape  # (32, 10)
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int],
        out_features: int,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        init: str = "default",
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for hidden in hidden_sizes:
            layers.append(nn.Linear(width, hidden))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, out_features))
        self.layers = nn.Sequential(*layers)
        initialize_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
