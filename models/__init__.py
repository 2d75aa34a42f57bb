"""trainlab's LightningModules. Short class names in experiment files resolve here.

Each model is a task (loss, metrics, optimisation: ``models.task``, ``models.classification``,
``models.regression``, ``models.segmentation``) wrapped around a plain net from ``models.nets``.
"""

from models.classification import ClassificationTask
from models.cnn import CNNClassifier
from models.forecasting import RNNForecaster
from models.mlp import MLPClassifier, MLPRegressor
from models.regression import RegressionTask
from models.segmentation import SegmentationTask, UNetSegmenter
from models.sequence import RNNClassifier
from models.task import TrainlabTask

__all__ = [
    "CNNClassifier",
    "ClassificationTask",
    "MLPClassifier",
    "MLPRegressor",
    "RNNClassifier",
    "RNNForecaster",
    "RegressionTask",
    "SegmentationTask",
    "TrainlabTask",
    "UNetSegmenter",
]
