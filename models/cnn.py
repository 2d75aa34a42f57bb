"""CNNClassifier: the SimpleCNN net under the classification task."""

from __future__ import annotations

from typing import Optional

from trainlab.models.classification import ClassificationTask
from trainlab.models.losses import ClassificationLoss
from trainlab.models.nets.cnn import SimpleCNN
from trainlab.models.nets.layers import Activation, Init
from trainlab.types import NonNegativeFloat, PositiveInt, UnitFraction


class CNNClassifier(ClassificationTask):
    """Convolutional classifier for (C, H, W) images; ``num_classes``/``input_shape`` come from the datamodule.

    Example experiment-file section::

        model:
          class_path: CNNClassifier
          init_args: {channels: [32, 64], dropout: 0.25, batch_norm: true}
    """

    def __init__(
        self,
        channels: list[PositiveInt] = [32, 64],
        hidden_size: PositiveInt = 128,
        convs_per_stage: PositiveInt = 1,
        activation: Activation = "relu",
        dropout: UnitFraction = 0.0,
        batch_norm: bool = True,
        init: Init = "default",
        global_pool: bool = True,
        channels_last: bool = False,
        loss: ClassificationLoss = "cross_entropy",
        label_smoothing: UnitFraction = 0.0,
        l1_penalty: NonNegativeFloat = 0.0,
        num_classes: Optional[PositiveInt] = None,
        input_shape: Optional[list[PositiveInt]] = None,
    ) -> None:
        if num_classes is None or input_shape is None or len(input_shape) != 3:
            raise ValueError("CNNClassifier needs num_classes and a (C, H, W) input_shape from the datamodule")
        super().__init__(num_classes=num_classes, loss=loss, label_smoothing=label_smoothing, l1_penalty=l1_penalty)
        self.save_hyperparameters()
        self.net = SimpleCNN(
            in_channels=input_shape[0],
            channels=channels,
            num_classes=self.net_outputs,
            hidden_size=hidden_size,
            activation=activation,
            dropout=dropout,
            batch_norm=batch_norm,
            convs_per_stage=convs_per_stage,
            init=init,
            global_pool=global_pool,
            input_size=input_shape[1:],
            channels_last=channels_last,
        )
