"""Recurrent nets: vanilla RNN, LSTM or GRU over a (batch, time, channels) sequence, a linear head on the last state."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from trainlab.models.nets.layers import initialize_weights

Cell = Literal["rnn", "lstm", "gru"]
_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentNet(nn.Module):
    """Reads a sequence and maps its final hidden state (both directions when bidirectional) to ``out_features``.

    Variable-length batches are zero-padded to a common length and passed with their ``lengths``: the
    sequence is packed, so the recurrence stops at each sequence's own last step and padding never reaches
    the hidden state. Without ``lengths`` every sequence is taken to be full length (forecasting windows).

    Example::

        net = RecurrentNet(input_size=12, out_features=9, cell="gru", hidden_size=64, bidirectional=True)
        net(torch.randn(8, 29, 12), lengths=torch.randint(7, 30, (8,))).shape  # (8, 9)
    """

    def __init__(
        self,
        input_size: int,
        out_features: int,
        cell: Cell = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        nonlinearity: Literal["tanh", "relu"] = "tanh",
        init: str = "default",
    ):
        super().__init__()
        if cell not in _CELLS:
            raise ValueError(f"unknown cell {cell!r}; expected one of {sorted(_CELLS)}")
        extra = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        self.directions = 2 if bidirectional else 1
        self.rnn = _CELLS[cell](
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,  # torch applies it between layers only
            **extra,
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(hidden_size * self.directions, out_features)
        initialize_weights(self, init)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is not None:
            # pack_padded_sequence wants lengths on the CPU; the output's h_n is in the batch's own order.
            x = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.rnn(x)
        if isinstance(hidden, tuple):  # LSTM returns (h_n, c_n)
            hidden = hidden[0]
        last_layer = hidden[-self.directions :]  # (directions, batch, hidden)
        features = last_layer.transpose(0, 1).reshape(last_layer.shape[1], -1)
        return self.head(self.dropout(features))
