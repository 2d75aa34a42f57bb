"""RNNClassifier: a vanilla RNN, LSTM or GRU under the classification task, for (variable-length) sequences."""

from __future__ import annotations

from typing import Literal, Optional

from trainlab.models.classification import ClassificationTask
from trainlab.models.losses import ClassificationLoss
from trainlab.models.nets.layers import Init
from trainlab.models.nets.rnn import Cell, RecurrentNet
from trainlab.types import NonNegativeFloat, PositiveInt, UnitFraction


class RNNClassifier(ClassificationTask):
    """Sequence classifier. ``input_shape`` is ``[time, channels]`` and, with ``num_classes``, comes from the datamodule.

    Batches are ``(x, lengths, y)``: ``x`` zero-padded to ``(N, time, channels)``, ``lengths`` ``(N,)``
    the true lengths, ``y`` ``(N,)`` labels; or ``(x, y)`` when all sequences have the same length.
    ``forward(x, lengths=None)`` returns ``(N, num_classes)`` logits.

    Example experiment-file section::

        model:
          class_path: RNNClassifier
          init_args: {cell: gru, hidden_size: 64, num_layers: 2, bidirectional: true, dropout: 0.2, init: orthogonal}
    """

    def __init__(
        self,
        cell: Cell = "lstm",
        hidden_size: PositiveInt = 64,
        num_layers: PositiveInt = 1,
        bidirectional: bool = False,
        dropout: UnitFraction = 0.0,
        nonlinearity: Literal["tanh", "relu"] = "tanh",
        init: Init = "default",
        loss: ClassificationLoss = "cross_entropy",
        label_smoothing: UnitFraction = 0.0,
        l1_penalty: NonNegativeFloat = 0.0,
        num_classes: Optional[PositiveInt] = None,
        input_shape: Optional[list[PositiveInt]] = None,
    ) -> None:
        if num_classes is None or input_shape is None or len(input_shape) != 2:
            raise ValueError("RNNClassifier needs num_classes and a [time, channels] input_shape from the datamodule")
        super().__init__(num_classes=num_classes, loss=loss, label_smoothing=label_smoothing, l1_penalty=l1_penalty)
        self.save_hyperparameters()
        self.net = RecurrentNet(
            input_size=input_shape[-1],
            out_features=self.net_outputs,
            cell=cell,
            hidden_size=hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            nonlinearity=nonlinearity,
            init=init,
        )
