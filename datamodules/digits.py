"""scikit-learn's shipped 8×8 handwritten digits (1,797 images, 10 classes): no download, trains in seconds."""

from __future__ import annotations

import torch

from trainlab.types import HeldOutFraction
from trainlab.datamodules.in_memory import InMemoryDataModule, Split


class Digits(InMemoryDataModule):
    """UCI optical digits as 1×8×8 images. A held-out test split (``test_fraction``) is drawn by ``split_seed``.

    Example::

        data:
          class_path: Digits
          init_args: {batch_size: 64, val_fraction: 0.15}
    """

    def __init__(self, test_fraction: HeldOutFraction = 0.2, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        self.test_fraction = test_fraction

    def load_splits(self) -> dict[str, Split]:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1)
        y = torch.tensor(bunch.target, dtype=torch.long)
        train, test = self._carve((x, y), self.test_fraction)
        return {"train": train, "test": test}
