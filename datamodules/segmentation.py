"""Segmentation sets: stardist's annotated nuclei image, tiled with a region split; Fashion-MNIST with derived masks."""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
import torch

from trainlab.datamodules.data_packages import import_data_package
from trainlab.datamodules.in_memory import InMemoryDataModule, Split
from trainlab.datamodules.mnist import FashionMNIST
from trainlab.types import HeldOutFraction, NonNegativeInt, PositiveInt, UnitFraction


def _tiles(image: torch.Tensor, mask: torch.Tensor, size: int, stride: int) -> Split:
    """Every ``size``×``size`` tile at ``stride`` steps: images (N, 1, size, size), masks (N, size, size)."""
    rows = range(0, image.shape[0] - size + 1, stride)
    columns = range(0, image.shape[1] - size + 1, stride)
    images = torch.stack([image[r : r + size, c : c + size] for r in rows for c in columns]).unsqueeze(1)
    masks = torch.stack([mask[r : r + size, c : c + size] for r in rows for c in columns])
    return images, masks


def _dihedral(split: Split) -> Split:
    """The 8 rotations and reflections of every tile: nuclei have no up or left, so each is a real example."""
    images, masks = split
    out_images, out_masks = [], []
    for flip in (False, True):
        x, y = (images.flip(-1), masks.flip(-1)) if flip else (images, masks)
        for turns in range(4):
            out_images.append(torch.rot90(x, turns, dims=(-2, -1)))
            out_masks.append(torch.rot90(y, turns, dims=(-2, -1)))
    return torch.cat(out_images), torch.cat(out_masks)


class NucleiTiles(InMemoryDataModule):
    """A 512×512 fluorescence image of cell nuclei with its hand-annotated mask (2018 Data Science Bowl), binary.

    stardist ships the image and mask (``stardist.data.test_image_nuclei_2d``; no download, the ``data``
    extra installs it). The image is cut into vertical bands so no pixel is in two splits: the right
    ``test_fraction`` of the width is the test region, the ``val_fraction`` left of it the validation
    region, the rest the training region. Each region is tiled (``tile`` px; training tiles overlap at
    ``stride``, evaluation tiles do not), and training tiles are augmented with their 8 rotations and
    reflections when ``augment``.

    Example::

        data:
          class_path: NucleiTiles
          init_args: {tile: 64, batch_size: 32}
    """

    def __init__(
        self,
        tile: PositiveInt = 64,
        stride: Optional[PositiveInt] = None,
        test_fraction: HeldOutFraction = 0.25,
        augment: bool = True,
        val_fraction: UnitFraction = 0.125,
        **kwargs,
    ) -> None:
        super().__init__(val_fraction=val_fraction, **kwargs)
        self.tile = tile
        self.stride = stride or max(1, tile // 2)
        self.test_fraction = test_fraction
        self.augment = augment

    def load_splits(self) -> dict[str, Split]:
        data = import_data_package("stardist.data", "NucleiTiles")
        image, labels = data.test_image_nuclei_2d(return_mask=True)
        image = torch.from_numpy(image.astype(np.float32))
        mask = torch.from_numpy((labels > 0).astype(np.int64))  # instance labels → foreground
        width = image.shape[1]
        test_start = width - int(round(width * self.test_fraction))
        val_start = test_start - int(round(width * self.val_fraction))
        regions = {"train": (0, val_start), "val": (val_start, test_start), "test": (test_start, width)}
        splits = {}
        for name, (start, end) in regions.items():
            if end - start < self.tile:
                raise ValueError(f"the {name} region is {end - start} px wide, narrower than a {self.tile} px tile; use a smaller tile or larger fractions")
            stride = self.stride if name == "train" else self.tile
            splits[name] = _tiles(image[:, start:end], mask[:, start:end], self.tile, stride)
        if self.augment:
            splits["train"] = _dihedral(splits["train"])
        return splits


class FashionMNISTMasks(FashionMNIST):
    """Fashion-MNIST images with masks derived by thresholding the image itself (pixels brighter than ``threshold``).

    Derived, not annotated: ``masks: binary`` (garment vs background) is learnable from brightness alone,
    a check that the segmentation path works; ``masks: garment`` labels the garment's pixels with its class
    (1..10, background 0), which needs the garment recognised, a real multi-class task. Files are found
    as for ``FashionMNIST`` (Debian's dataset-fashion-mnist); ``limit_train`` keeps runs short.

    Example::

        data:
          class_path: FashionMNISTMasks
          init_args: {masks: garment, limit_train: 5000}
    """

    def __init__(self, masks: Literal["binary", "garment"] = "binary", threshold: NonNegativeInt = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.masks = masks
        self.threshold = threshold

    def load_splits(self) -> dict[str, Split]:
        splits = {}
        for name, (images, labels) in super().load_splits().items():
            foreground = (images[:, 0] > self.threshold).long()
            mask = foreground * (labels[:, None, None] + 1) if self.masks == "garment" else foreground
            splits[name] = (images, mask)
        return splits
