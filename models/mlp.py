"""MLPClassifier: the MLP net under the classification task."""

from __future__ import annotations

import math
from typing import Optional

from models.classification import ClassificationTask
from models.nets.layers import Activation, Init
from models.nets.mlp import MLP
from trainlab.types import PositiveInt, UnitFraction


class MLPClassifier(ClassificationTask):
    """Fully connected classifier; ``num_classes`` and ``input_shape`` are filled from the datamodule.

    Example experiment-file section::

        model:
          class_path: MLPClassifier
          init_args: {hidden_sizes: [128, 64], dropout: 0.1, activation: relu, batch_norm: true}
    """

    def __init__(
        self,
        hidden_sizes: list[PositiveInt] = [128, 64],
        activation: Activation = "relu",
        dropout: UnitFraction = 0.0,
        batch_norm: bool = False,
        init: Init = "default",
        label_smoothing: UnitFraction = 0.0,
        num_classes: Optional[PositiveInt] = None,
        input_shape: Optional[list[PositiveInt]] = None,
    ) -> None:
        if num_classes is None or input_shape is None:
            raise ValueError("MLPClassifier needs num_classes and input_shape (trainlab fills them from the datamodule)")
        super().__init__(num_classes=num_classes, label_smoothing=label_smoothing)
        self.save_hyperparameters()
        self.net = MLP(
            in_features=math.prod(input_shape),
            hidden_sizes=hidden_sizes,
            out_features=num_classes,
            activation=activation,
            dropout=dropout,
            batch_norm=batch_norm,
            init=init,
        )
