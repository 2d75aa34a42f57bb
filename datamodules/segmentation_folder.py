"""SegmentationFolder: the user's own images and masks (PNG or TIFF) from a directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from trainlab.datamodules.in_memory import InMemoryDataModule, Split
from trainlab.types import HeldOutFraction

EXTENSIONS = (".png", ".tif", ".tiff")


def read_image(path: Path) -> np.ndarray:
    """An image file as an array: (H, W) grey or (H, W, C) colour. TIFF through tifffile when installed
    (it reads scientific TIFFs: 16-bit, float, compressed), otherwise, and for PNG, through Pillow."""
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            import tifffile
        except ImportError:
            pass
        else:
            return np.asarray(tifffile.imread(path))
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image)


class SegmentationFolder(InMemoryDataModule):
    """Images in ``root/images``, masks with the same file stem in ``root/masks`` (PNG or TIFF, any mix).

    Masks hold class indices per pixel (0 background, 1, 2, ... foreground classes); ``binary: true``
    turns any non-zero value (instance labels, 255-valued masks) into 1. Images are grey (H, W) or colour
    (H, W, C); all must share one size. A ``test_fraction`` and a ``val_fraction`` of the pairs (at least
    one each) are held out by ``split_seed``.

    Example::

        data:
          class_path: SegmentationFolder
          init_args: {root: ~/data/cells, binary: true, batch_size: 8}
    """

    def __init__(
        self,
        root: str,
        images: str = "images",
        masks: str = "masks",
        binary: bool = False,
        test_fraction: HeldOutFraction = 0.2,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.images_dir = self.root / images
        self.masks_dir = self.root / masks
        self.binary = binary
        self.test_fraction = test_fraction

    def load_splits(self) -> dict[str, Split]:
        for directory in (self.images_dir, self.masks_dir):
            if not directory.is_dir():
                raise FileNotFoundError(f"{directory} is not a directory (SegmentationFolder expects {self.images_dir} and {self.masks_dir})")
        images = _by_stem(self.images_dir)
        masks = _by_stem(self.masks_dir)
        if not images:
            raise FileNotFoundError(f"no {'/'.join(EXTENSIONS)} images in {self.images_dir}")
        unmatched = sorted(set(images) ^ set(masks))
        if unmatched:
            raise ValueError(f"every image needs a mask with the same name and vice versa; unmatched: {', '.join(unmatched[:5])}")
        x_list, y_list = [], []
        for stem in sorted(images):
            image, mask = read_image(images[stem]), read_image(masks[stem])
            if mask.ndim != 2:
                raise ValueError(f"{masks[stem]}: a mask must be one channel of class indices, got shape {mask.shape}")
            if image.shape[:2] != mask.shape:
                raise ValueError(f"{images[stem].name} is {image.shape[:2]} but its mask is {mask.shape}")
            x_list.append(image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0))
            y_list.append(mask)
        shapes = {x.shape for x in x_list}
        if len(shapes) > 1:
            raise ValueError(f"all images must have one size and channel count, found {sorted(shapes)}")
        x = torch.from_numpy(np.stack(x_list).astype(np.float32))
        y = torch.from_numpy(np.stack(y_list).astype(np.int64))
        if self.binary:
            y = (y > 0).long()
        elif y.min() < 0:
            raise ValueError("mask values must be class indices >= 0")
        # At least one pair in each split: with a handful of images, rounding would leave one empty.
        n = len(y)
        n_test, n_val = max(1, round(n * self.test_fraction)), max(1, round(n * self.val_fraction))
        if n - n_test - n_val < 1:
            raise ValueError(f"need at least 3 image/mask pairs for train, validation and test splits, found {n}")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        parts = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
        return {name: (x[index], y[index]) for name, index in parts.items()}


def _by_stem(directory: Path) -> dict[str, Path]:
    return {path.stem: path for path in sorted(directory.iterdir()) if path.suffix.lower() in EXTENSIONS}
