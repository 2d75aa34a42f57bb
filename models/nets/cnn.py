"""A small VGG-style CNN: [Conv3x3 → [BatchNorm] → activation] ×2 → MaxPool per stage, then a classifier head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trainlab.models.nets.layers import initialize_weights, make_activation


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
        global_pool: bool = True,
        input_size: Sequence[int] | None = None,
        channels_last: bool = False,
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
        if global_pool:
            # Global average pooling keeps the head independent of the input size.
            pool: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        else:
            # Flattening keeps where features are: more accurate for small nets on small images.
            if input_size is None:
                raise ValueError("global_pool=False needs the input_size (H, W) to size the head")
            side = [size // 2 ** len(channels) for size in input_size]
            if min(side) < 1:
                raise ValueError(f"{len(channels)} pooling stages leave nothing of a {tuple(input_size)} input")
            pool, width = [nn.Flatten()], width * side[0] * side[1]
        self.head = nn.Sequential(
            *pool,
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(width, hidden_size),
            make_activation(activation),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(hidden_size, num_classes),
        )
        initialize_weights(self, init)
        # NHWC activations: PyTorch's CPU pooling and batch-norm kernels run several times faster on them.
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.features(x))
