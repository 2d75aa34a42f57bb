"""trainlab's LightningDataModules. Short class names in experiment files resolve here."""

from datamodules.digits import Digits
from datamodules.in_memory import InMemoryDataModule
from datamodules.loader import TensorBatchLoader

__all__ = ["Digits", "InMemoryDataModule", "TensorBatchLoader"]
