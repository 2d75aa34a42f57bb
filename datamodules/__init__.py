"""trainlab's LightningDataModules. Short class names in experiment files resolve here."""

from datamodules.digits import Digits
from datamodules.in_memory import InMemoryDataModule
from datamodules.loader import TensorBatchLoader
from datamodules.mnist import MNIST, FashionMNIST

__all__ = ["Digits", "FashionMNIST", "InMemoryDataModule", "MNIST", "TensorBatchLoader"]
