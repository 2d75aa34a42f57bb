"""trainlab's LightningModules. Short class names in experiment files resolve here.

Each model is a task (loss, metrics, optimisation: ``models.task``, ``models.classification``) wrapped
around a plain net from ``models.nets``.
"""

from models.classification import ClassificationTask
from models.cnn import CNNClassifier
from models.mlp import MLPClassifier
from models.task import TrainlabTask

__all__ = ["CNNClassifier", "ClassificationTask", "MLPClassifier", "TrainlabTask"]
