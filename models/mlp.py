"""MLPClassifier and MLPRegressor: the MLP net under the classification and regression tasks."""

from __future__ import annotations

import math
from typing import Optional

from trainlab.models.classification import ClassificationTask
from trainlab.models.losses import ClassificationLoss, RegressionLoss
from trainlab.models.nets.layers import Activation, Init
from trainlab.models.nets.mlp import MLP
from trainlab.models.regression import RegressionTask
from trainlab.types import NonNegativeFloat, PositiveInt, UnitFraction


class MLPClassifier(ClassificationTask):
    """Fully connected classifier; ``num_classes`` and ``input_shape`` are filled from the datamodule.

    Example experiment-file section::

        model:
          class_path: MLPClassifier
          init_args: {hidden_sizes: [128, 64], dropout: 0.1, activation: relu, batch_norm: true, l1_penalty: 1.0e-5}
    """

    def __init__(
        self,
        hidden_sizes: list[PositiveInt] = [128, 64],
        activation: Activation = "relu",
        dropout: UnitFraction = 0.0,
        batch_norm: bool = False,
        init: Init = "default",
        loss: ClassificationLoss = "cross_entropy",
        label_smoothing: UnitFraction = 0.0,
        l1_penalty: NonNegativeFloat = 0.0,
        num_classes: Optional[PositiveInt] = None,
        input_shape: Optional[list[PositiveInt]] = None,
    ) -> None:
        if num_classes is None or input_shape is None:
            raise ValueError("MLPClassifier needs num_classes and input_shape (trainlab fills them from the datamodule)")
        super().__init__(num_classes=num_classes, loss=loss, label_smoothing=label_smoothing, l1_penalty=l1_penalty)
        self.save_hyperparameters()
        self.net = MLP(
            in_features=math.prod(input_shape),
            hidden_sizes=hidden_sizes,
            out_features=self.net_outputs,
            activation=activation,
            dropout=dropout,
            batch_norm=batch_norm,
            init=init,
        )


class MLPRegressor(RegressionTask):
    """Fully connected regressor (tabular data); sizes and target scale are filled from the datamodule.

    Example experiment-file section::

        model:
          class_path: MLPRegressor
          init_args: {hidden_sizes: [64, 32], loss: mse, dropout: 0.1}
    """

    def __init__(
        self,
        hidden_sizes: list[PositiveInt] = [64, 32],
        activation: Activation = "relu",
        dropout: UnitFraction = 0.0,
        batch_norm: bool = False,
        init: Init = "default",
        loss: RegressionLoss = "mse",
        l1_penalty: NonNegativeFloat = 0.0,
        num_outputs: Optional[PositiveInt] = None,
        input_shape: Optional[list[PositiveInt]] = None,
        target_mean: Optional[float] = None,
        target_std: Optional[float] = None,
    ) -> None:
        if num_outputs is None or input_shape is None:
            raise ValueError("MLPRegressor needs num_outputs and input_shape (trainlab fills them from the datamodule)")
        super().__init__(loss=loss, l1_penalty=l1_penalty, target_mean=target_mean, target_std=target_std)
        self.save_hyperparameters()
        self.net = MLP(
            in_features=math.prod(input_shape),
            hidden_sizes=hidden_sizes,
            out_features=num_outputs,
            activation=activation,
            dropout=dropout,
            batch_norm=batch_norm,
            init=init,
        )
