"""Regularisation for small corpora: dropout with one mask per sequence ("locked" or
variational dropout), dropout on the embedded inputs, and DropConnect on the recurrent weights
(AWD-LSTM's weight drop).

Everything here is off by default, and then the model runs exactly as without this module.
When weight drop or locked dropout between layers is on, training calls ATen's fused RNN op
(torch.lstm / torch.gru, the op nn.LSTM / nn.GRU call) with the module's own parameters, the
recurrent matrices dropped: the state_dict keeps its keys, and evaluation, sampling and the
one-token decoder use the plain weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import ModelConfig


class LockedDropout(nn.Module):
    """Dropout on (batch, time, features) with one mask per row, the same at every time step."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = 1 - self.p
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(keep).div_(keep)
        return x * mask


def make_dropout(p: float, locked: bool) -> nn.Module:
    return LockedDropout(p) if locked else nn.Dropout(p)


class RecurrentRegularizer(nn.Module):
    """Runs the recurrent stack with the configured dropouts: on the embedded inputs, between
    layers (locked or not) and DropConnect on the weight_hh matrices. Holds no parameters."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.input_dropout = make_dropout(config.embedding_dropout, config.locked_dropout)
        self.between_dropout = make_dropout(config.dropout, config.locked_dropout)
        self.weight_drop = config.weight_drop
        self.locked_between = config.locked_dropout and config.dropout > 0 and config.num_layers > 1

    def forward(self, rnn: nn.RNNBase, inputs: torch.Tensor, state):
        if self.input_dropout.p > 0:
            inputs = self.input_dropout(inputs)
        if not self.training or not (self.weight_drop > 0 or self.locked_between):
            return rnn(inputs, state)  # the module's own path: inter-layer dropout per element
        if state is None:
            state = _zero_state(rnn, inputs)
        if not self.locked_between:
            return _fused(rnn, inputs, state, self._weights(rnn, range(rnn.num_layers)),
                          rnn.num_layers, rnn.dropout)
        return self._layer_by_layer(rnn, inputs, state)

    def _layer_by_layer(self, rnn: nn.RNNBase, inputs: torch.Tensor, state):
        directions = 2 if rnn.bidirectional else 1
        lstm = isinstance(state, tuple)
        outputs, finals = inputs, []
        for layer in range(rnn.num_layers):
            rows = slice(layer * directions, (layer + 1) * directions)
            layer_state = (state[0][rows], state[1][rows]) if lstm else state[rows]
            if layer > 0:
                outputs = self.between_dropout(outputs)
            outputs, final = _fused(rnn, outputs, layer_state, self._weights(rnn, [layer]), 1, 0.0)
            finals.append(final)
        if lstm:
            return outputs, (torch.cat([h for h, _ in finals]), torch.cat([c for _, c in finals]))
        return outputs, torch.cat(finals)

    def _weights(self, rnn: nn.RNNBase, layers) -> list[torch.Tensor]:
        """The flat weights of `layers` in nn.LSTM/GRU's order, weight_hh dropped."""
        suffixes = {f"_l{layer}" for layer in layers} | {f"_l{layer}_reverse" for layer in layers}
        weights = []
        for name in rnn._flat_weights_names:
            if "_l" + name.rsplit("_l", 1)[1] not in suffixes:
                continue
            weight = getattr(rnn, name)
            if name.startswith("weight_hh") and self.weight_drop > 0:
                weight = F.dropout(weight, self.weight_drop, training=True)
            weights.append(weight)
        return weights


def _zero_state(rnn: nn.RNNBase, inputs: torch.Tensor):
    directions = 2 if rnn.bidirectional else 1
    zeros = inputs.new_zeros(rnn.num_layers * directions, inputs.shape[0], rnn.hidden_size)
    return (zeros, zeros.clone()) if isinstance(rnn, nn.LSTM) else zeros


def _fused(rnn: nn.RNNBase, inputs, state, weights, num_layers: int, dropout: float):
    """One call of the fused op (what nn.LSTM/GRU.forward calls) with explicit weights."""
    args = (weights, rnn.bias, num_layers, dropout, True, rnn.bidirectional, rnn.batch_first)
    if isinstance(rnn, nn.LSTM):
        output, h, c = torch.lstm(inputs, list(state), *args)
        return output, (h, c)
    output, h = torch.gru(inputs, state, *args)
    return output, h

