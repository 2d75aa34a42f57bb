"""trainlab's LightningModules. Short class names in experiment files resolve here.

Each model is a task (loss, metrics, optimisation: ``models.task``, ``models.classification``,
``models.regression``, ``models.segmentation``) wrapped around a plain net from ``models.nets``.
"""

from trainlab.models.classification import ClassificationTask
from trainlab.models.cnn import CNNClassifier
from trainlab.models.forecasting import RNNForecaster
from trainlab.models.mlp import MLPClassifier, MLPRegressor
from trainlab.models.regression import RegressionTask
from trainlab.models.segmentation import SegmentationTask, UNetSegmenter
from trainlab.models.sequence import RNNClassifier
from trainlab.models.task import TrainlabTask

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
