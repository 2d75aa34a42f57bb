"""Base class for datasets that fit in memory as tensors."""

from __future__ import annotations

import hashlib
from typing import Any

import lightning as L
import torch

from trainlab.types import NonNegativeInt, PositiveInt, UnitFraction

from trainlab.datamodules.loader import TensorBatchLoader

# A split's tensors, all of the same length: inputs first, targets last, e.g. (x, y) or (x, lengths, y).
Split = tuple[torch.Tensor, ...]


class InMemoryDataModule(L.LightningDataModule):
    """Loads whole splits as tensors once, normalises them with training statistics, batches by slicing.

    Subclasses implement :meth:`load_splits`, returning ``{"train": (x, y), "test": (x, y)}`` (a
    validation split is then carved out of train) or ``{"train", "val", "test"}`` directly; a split may
    carry more tensors between inputs and targets, e.g. ``(x, lengths, y)``, and batches then have the
    same form. Splits are a deterministic function of ``split_seed``, not of the run's seed, so every
    trial of a study sees the same data. Normalisation applies to the first tensor only.

    ``balanced: true`` draws training batches with a class-balanced sampler (with replacement, each
    class equally likely) for imbalanced class labels.

    ``describe()`` tells the run builder what the model needs (input shape, number of classes, or the
    number of outputs and the target scale for regression).
    """

    task: str = "classification"

    def __init__(
        self,
        batch_size: PositiveInt = 64,
        eval_batch_size: PositiveInt | None = None,
        val_fraction: UnitFraction = 0.1,
        split_seed: NonNegativeInt = 0,
        shuffle: bool = True,
        normalize: bool = True,
        balanced: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or max(batch_size, 256)
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.shuffle = shuffle
        self.normalize = normalize
        self.balanced = balanced
        self.splits: dict[str, Split] | None = None
        self._train_loader: TensorBatchLoader | None = None
        self._train_epochs_drawn = 0  # from a checkpoint: how many shuffles the training loader had drawn

    # -- what subclasses provide -------------------------------------------------------------------
    def load_splits(self) -> dict[str, Split]:
        raise NotImplementedError

    def num_classes(self) -> int | None:
        y = self._loaded()["train"][-1]
        return int(y.max()) + 1 if y.dtype == torch.long else None

    # -- LightningDataModule hooks -----------------------------------------------------------------
    def prepare_data(self) -> None:
        self._loaded()

    def setup(self, stage: str | None = None) -> None:
        self._loaded()
        if self.trainer is not None and self.trainer.strategy.root_device.type == "cuda":
            self._move_to(self.trainer.strategy.root_device)

    def train_dataloader(self) -> TensorBatchLoader:
        self._train_loader = self._loader("train", self.batch_size, shuffle=self.shuffle)
        self._train_loader.epoch = self._train_epochs_drawn
        return self._train_loader

    # Lightning keeps a datamodule's state in its checkpoints: a resumed run shuffles its next epoch as the
    # uninterrupted run did (the loader draws each epoch's order from seed + epochs drawn).
    def state_dict(self) -> dict[str, Any]:
        return {"train_epochs_drawn": self._train_loader.epoch if self._train_loader else self._train_epochs_drawn}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._train_epochs_drawn = int(state_dict.get("train_epochs_drawn", 0))

    def val_dataloader(self) -> TensorBatchLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> TensorBatchLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    # -- what the run builder and tracking read ----------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Shape facts the model is built from; filled into ``model.init_args`` when left unset."""
        x = self._loaded()["train"][0]
        facts: dict[str, Any] = {"input_shape": list(x.shape[1:])}
        classes = self.num_classes()
        if classes is not None:
            facts["num_classes"] = classes
        else:  # real-valued targets: regression
            y = self._loaded()["train"][-1].float()
            facts["num_outputs"] = 1 if y.dim() == 1 else int(y.shape[1])
            facts["target_mean"] = float(y.mean())
            facts["target_std"] = float(y.std().clamp_min(1e-8))
        return facts

    def fingerprint(self) -> dict[str, Any]:
        """SHA-256 of every split's tensors as used in training (after splitting and normalising)."""
        result = {}
        for name, split in self._loaded().items():
            digest = hashlib.sha256()
            for t in split:
                digest.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
                digest.update(t.detach().cpu().contiguous().numpy().tobytes())
            result[name] = {"sha256": digest.hexdigest(), "samples": len(split[-1])}
        return result

    # -- internals ---------------------------------------------------------------------------------
    def _loaded(self) -> dict[str, Split]:
        if self.splits is None:
            splits = self.load_splits()
            if "val" not in splits:
                splits["train"], splits["val"] = self._carve(splits["train"], self.val_fraction)
            if self.normalize:
                splits = self._normalized(splits)
            labels = splits["train"][-1]
            if self.balanced and (labels.dtype != torch.long or labels.dim() != 1):
                raise ValueError("balanced: true needs one class label per sample; this data's targets are not that")
            self.splits = splits
        return self.splits

    def _carve(self, split: Split, fraction: float) -> tuple[Split, Split]:
        n = len(split[-1])
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        n_held = int(round(n * fraction))
        keep, held = order[n_held:], order[:n_held]
        return tuple(t[keep] for t in split), tuple(t[held] for t in split)

    def _normalized(self, splits: dict[str, Split]) -> dict[str, Split]:
        x_train = splits["train"][0].float()
        # Images: one mean/std over all pixels. Tabular: per feature.
        dims = tuple(range(x_train.dim())) if x_train.dim() > 2 else (0,)
        mean = x_train.mean(dim=dims, keepdim=True)
        std = x_train.std(dim=dims, keepdim=True).clamp_min(1e-8)
        if x_train.dim() > 2:
            mean, std = mean.squeeze(0), std.squeeze(0)
        return {name: ((x.float() - mean) / std, *rest) for name, (x, *rest) in splits.items()}

    def _move_to(self, device: torch.device) -> None:
        # Keep the whole dataset on the accelerator when it fits: batches are then views, no copies.
        assert self.splits is not None
        size = sum(t.element_size() * t.nelement() for split in self.splits.values() for t in split)
        free, _ = torch.cuda.mem_get_info(device)
        if size < 0.5 * free:
            self.splits = {k: tuple(t.to(device) for t in split) for k, split in self.splits.items()}

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> TensorBatchLoader:
        tensors = self._loaded()[split]
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        return TensorBatchLoader(
            tensors,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=torch.initial_seed() % 2**31,
            rank=rank,
            world_size=world,
            equal_shards=split == "train",
            sampler_weights=self._balancing_weights(tensors[-1]) if split == "train" and self.balanced else None,
        )

    @staticmethod
    def _balancing_weights(y: torch.Tensor) -> torch.Tensor:
        """Per-sample weights 1 / (size of its class): every class is drawn equally often."""
        counts = torch.bincount(y.cpu())
        return (1.0 / counts.float())[y.cpu()]
