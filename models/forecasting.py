"""RNNForecaster: a recurrent net under the regression task, predicting the next values of a series."""

from __future__ import annotations

from typing import Literal, Optional

from trainlab.models.losses import RegressionLoss
from trainlab.models.nets.layers import Init
from trainlab.models.nets.rnn import Cell, RecurrentNet
from trainlab.models.regression import RegressionTask
from trainlab.types import NonNegativeFloat, PositiveInt, UnitFraction


class RNNForecaster(RegressionTask):
    """Reads a window of past values and predicts the next ``num_outputs`` (the horizon).

    Batches are ``(x, y)``: ``x`` ``(N, window, channels)`` (normalised by the datamodule), ``y``
    ``(N, horizon)`` in the series' own units; ``forward(x)`` returns ``(N, horizon)`` in those units.
    ``input_shape`` (``[window, channels]``), ``num_outputs`` and the target scale come from the datamodule.

    Example experiment-file section::

        model:
          class_path: RNNForecaster
          init_args: {cell: lstm, hidden_size: 32, loss: mae}
    """

    task_type = "forecasting"

    def __init__(
        self,
        cell: Cell = "lstm",
        hidden_size: PositiveInt = 32,
        num_layers: PositiveInt = 1,
        bidirectional: bool = False,
        dropout: UnitFraction = 0.0,
        nonlinearity: Literal["tanh", "relu"] = "tanh",
        init: Init = "default",
        loss: RegressionLoss = "mse",
        l1_penalty: NonNegativeFloat = 0.0,
        num_outputs: Optional[PositiveInt] = None,
        input_shape: Optional[list[PositiveInt]] = None,
        target_mean: Optional[float] = None,
        target_std: Optional[float] = None,
    ) -> None:
        if num_outputs is None or input_shape is None or len(input_shape) != 2:
            raise ValueError("RNNForecaster needs num_outputs and a [window, channels] input_shape from the datamodule")
        super().__init__(loss=loss, l1_penalty=l1_penalty, target_mean=target_mean, target_std=target_std)
        self.save_hyperparameters()
        self.net = RecurrentNet(
            input_size=input_shape[-1],
            out_features=num_outputs,
            cell=cell,
            hidden_size=hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            nonlinearity=nonlinearity,
            init=init,
        )
