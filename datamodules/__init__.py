"""trainlab's LightningDataModules. Short class names in experiment files resolve here."""

from datamodules.digits import Digits
from datamodules.in_memory import InMemoryDataModule
from datamodules.loader import TensorBatchLoader
from datamodules.mnist import MNIST, FashionMNIST
from datamodules.forecasting import SeriesWindows, StatsmodelsSeries
from datamodules.segmentation import FashionMNISTMasks, NucleiTiles
from datamodules.segmentation_folder import SegmentationFolder
from datamodules.sequences import DigitsSequence, JapaneseVowels
from datamodules.tabular import BreastCancer, CSVDataModule, Diabetes, Wine

__all__ = [
    "BreastCancer",
    "CSVDataModule",
    "Diabetes",
    "Digits",
    "DigitsSequence",
    "FashionMNIST",
    "FashionMNISTMasks",
    "InMemoryDataModule",
    "JapaneseVowels",
    "MNIST",
    "NucleiTiles",
    "SegmentationFolder",
    "SeriesWindows",
    "StatsmodelsSeries",
    "TensorBatchLoader",
    "Wine",
]
