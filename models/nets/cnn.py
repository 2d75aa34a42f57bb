"""A small VGG-style CNN: [Conv3x3 → [BatchNorm] → activation] ×2 → MaxPool per stage, then a classifier head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from models.nets.layers import initialize_weights, make_activation


class SimpleCNN(nn.Module):
    """Image classifier for small images (MNIST-sized and up).

    Example::

        net = SimpleCNN(in_channels=1, channels=[32, 64], num_classes=10)
        net(torch.randn(8, 1, 28, 28)).shape  # (8, 10)
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        num_classes: int,
        hidden_size: int = 128,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = True,
        convs_per_stage: int = 1,
        init: str = "default",
    ):
        super().__init__()
        stages: list[nn.Module] = []
        width = in_channels
        for out in channels:
            for _ in range(convs_per_stage):
                stages.append(nn.Conv2d(width, out, kernel_size=3, padding=1, bias=not batch_norm))
                if batch_norm:
                    stages.append(nn.BatchNorm2d(out))
                stages.append(make_activation(activation))
                width = out
            stages.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*stages)
        # Global average pooling keeps the head independent of the input size.
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(width, hidden_size),
            make_activation(activation),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(hidden_size, num_classes),
        )
        initialize_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
