"""trainlab's LightningDataModules. Short class names in experiment files resolve here."""

from trainlab.datamodules.digits import Digits
from trainlab.datamodules.in_memory import InMemoryDataModule
from trainlab.datamodules.loader import TensorBatchLoader
from trainlab.datamodules.mnist import MNIST, FashionMNIST
from trainlab.datamodules.forecasting import SeriesWindows, StatsmodelsSeries
from trainlab.datamodules.segmentation import FashionMNISTMasks, NucleiTiles
from trainlab.datamodules.segmentation_folder import SegmentationFolder
from trainlab.datamodules.sequences import DigitsSequence, JapaneseVowels
from trainlab.datamodules.tabular import BreastCancer, CSVDataModule, Diabetes, Wine

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
