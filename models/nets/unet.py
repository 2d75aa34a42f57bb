"""A small U-Net: a convolutional encoder, a mirrored decoder, and skip connections between them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.models.nets.layers import initialize_weights, make_activation


def _double_conv(in_channels: int, out_channels: int, activation: str, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width_in in (in_channels, out_channels):
        layers.append(nn.Conv2d(width_in, out_channels, kernel_size=3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(make_activation(activation))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """Per-pixel logits for (C, H, W) images; ``depth`` halvings, ``width`` channels at the top, doubling down.

    Images whose sides are not multiples of 2**depth are zero-padded on the way in and cropped on the
    way out, so any size works (28×28 Fashion-MNIST with depth 3, for instance).

    Example::

        net = UNet(in_channels=1, out_channels=1, width=16, depth=3)
        net(torch.randn(4, 1, 64, 64)).shape  # (4, 1, 64, 64)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int = 16,
        depth: int = 3,
        activation: str = "relu",
        batch_norm: bool = True,
        dropout: float = 0.0,
        init: str = "default",
    ):
        super().__init__()
        widths = [width * 2**level for level in range(depth + 1)]
        self.encoder = nn.ModuleList()
        channels = in_channels
        for w in widths:
            self.encoder.append(_double_conv(channels, w, activation, batch_norm))
            channels = w
        self.bottleneck_dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.upsample.append(nn.ConvTranspose2d(channels, w, kernel_size=2, stride=2))
            self.decoder.append(_double_conv(2 * w, w, activation, batch_norm))
            channels = w
        self.head = nn.Conv2d(channels, out_channels, kernel_size=1)
        self.multiple = 2**depth
        initialize_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % self.multiple, -width % self.multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        skips = []
        for level, block in enumerate(self.encoder):
            if level:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        x = self.bottleneck_dropout(skips.pop())
        for upsample, block in zip(self.upsample, self.decoder):
            x = block(torch.cat([upsample(x), skips.pop()], dim=1))
        return self.head(x)[..., :height, :width]
