"""Input encoding -> fused LSTM/GRU -> linear head. The recurrent state is explicit.

Window models (framing.py) read a whole window and predict from its end only, as a Keras LSTM
without return_sequences does; only they may be bidirectional.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from torch.nn import functional as F

from .config import ModelConfig
from .encoding import fixed_table, input_width
from .kinds import STREAM, RunKind
from .regularize import RecurrentRegularizer, make_dropout

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}
# Keras 1.x (the tutorials' version) drew orthogonal initial matrices at scale 1.1; Keras 2
# made it 1. (The alphabet experiment keeps 1: its docstring says why.)
KERAS1_ORTHOGONAL_GAIN = 1.1


class RNNLanguageModel(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int, kind: RunKind = STREAM):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.kind = replace(kind, vocab_size=vocab_size)  # one vocabulary: the model's
        rows = vocab_size + (kind.pad_id is not None)
        if config.input_encoding == "embedding":
            self.embedding = nn.Embedding(rows, config.embedding_dim, padding_idx=kind.pad_id)
        else:  # fixed, so not saved with the weights
            self.register_buffer("fixed_inputs",
                                 fixed_table(config.input_encoding, vocab_size, rows),
                                 persistent=False)
        self.input_dropout = nn.Dropout(config.input_dropout)
        width = input_width(config, vocab_size)
        self.rnn = _CELLS[config.cell](
            width * kind.window if kind.layout == "features" else width,
            config.hidden_size,
            config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            bidirectional=config.bidirectional,
        )
        self.head_dropout = make_dropout(config.dropout, config.locked_dropout)
        self.head = nn.Linear(config.hidden_size * self.directions, vocab_size)
        self.regularizer = RecurrentRegularizer(config)
        if config.init == "keras":
            self._init_like_keras()
        if config.tie_weights:  # config validation: embedding input, same width, no pad row
            self.head.weight = self.embedding.weight

    @torch.no_grad()
    def _init_like_keras(self) -> None:
        """Keras 1.x's defaults (the 2016 tutorials'), which kept one kernel per gate:
        glorot-uniform input kernels with fan-out = hidden, an orthogonal recurrent kernel per
        gate scaled by 1.1, zero biases but 1 on the LSTM forget gate (PyTorch's gate order
        i, f, g, o), a glorot-uniform head and uniform +-0.05 embeddings. PyTorch draws every
        weight from +-1/sqrt(hidden) and leaves the forget gate's bias near 0."""
        size = self.config.hidden_size
        for name, param in self.rnn.named_parameters():
            if name.startswith("weight_ih"):
                limit = (6 / (param.size(1) + size)) ** 0.5
                nn.init.uniform_(param, -limit, limit)
            elif name.startswith("weight_hh"):
                for gate in param.split(size):
                    nn.init.orthogonal_(gate, gain=KERAS1_ORTHOGONAL_GAIN)
            else:
                param.zero_()
                if self.config.cell == "lstm" and name.startswith("bias_ih"):
                    param[size:2 * size] = 1.0
        nn.init.xavier_uniform_(self.head.weight)
        self.head.bias.zero_()
        if hasattr(self, "embedding"):
            nn.init.uniform_(self.embedding.weight, -0.05, 0.05)
            if self.embedding.padding_idx is not None:
                self.embedding.weight[self.embedding.padding_idx] = 0.0

    @property
    def directions(self) -> int:
        return 2 if self.config.bidirectional else 1

    def input_table(self) -> torch.Tensor:
        """(input ids, features) lookup table of the input encoding."""
        return self.embedding.weight if hasattr(self, "embedding") else self.fixed_inputs

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        inputs = F.embedding(ids, self.input_table())
        if self.kind.layout == "features":  # the window as the features of one time step
            inputs = inputs.reshape(ids.size(0), 1, -1)
        return self.input_dropout(inputs)

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """ids (batch, time) -> logits (batch, time, vocab) and the state after the last step;
        window models: logits (batch, 1, vocab), predicted from the end of the window."""
        hidden, state = self.regularizer(self.rnn, self.encode(ids), state)
        if self.kind.windowed:
            hidden = self._window_end(hidden)
        return self.head(self.head_dropout(hidden)), state

    def _window_end(self, hidden: torch.Tensor) -> torch.Tensor:
        """The forward direction's output after the last step and, when bidirectional, the
        backward direction's after the first (where it has read the whole window)."""
        size = self.config.hidden_size
        last = hidden[:, -1:, :size]
        if self.config.bidirectional:
            last = torch.cat([last, hidden[:, :1, size:]], dim=-1)
        return last

    def init_state(self, batch_size: int, device=None) -> State:
        shape = (self.config.num_layers * self.directions, batch_size, self.config.hidden_size)
        zeros = torch.zeros(shape, device=device)
        return (zeros, zeros.clone()) if self.config.cell == "lstm" else zeros


def detach_state(state: State | None) -> State | None:
    """Cut the graph between truncated-BPTT windows, keeping the values."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def select_state(state: State, rows) -> State:
    """The state of some rows of the batch (e.g. to repeat one prompt's state)."""
    if isinstance(state, tuple):
        return tuple(s[:, rows] for s in state)
    return state[:, rows]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def estimate_parameters(config: ModelConfig, vocab_size: int) -> int:
    """The parameter count of RNNLanguageModel(config, vocab_size), without building it."""
    gates = 4 if config.cell == "lstm" else 3
    directions = 2 if config.bidirectional else 1
    head = 0 if config.tie_weights else config.hidden_size * directions * vocab_size
    total = head + vocab_size
    if config.input_encoding == "embedding":
        total += vocab_size * config.embedding_dim  # (+1 padding row for window models)
    inputs = input_width(config, vocab_size)
    for _ in range(config.num_layers):
        total += directions * gates * config.hidden_size * (inputs + config.hidden_size + 2)
        inputs = config.hidden_size * directions
    return total


def estimate_training_bytes(config: ModelConfig, vocab_size: int, batch_size: int,
                            seq_len: int) -> int:
    """Rough peak memory of a training step: float32 weights, gradients and two Adam moments,
    plus the activations kept for the backward pass (gates and states of every layer and
    step, and the logits), doubled for their gradients."""
    gates = 4 if config.cell == "lstm" else 3
    params = estimate_parameters(config, vocab_size)
    per_position = (config.num_layers * config.hidden_size * (gates + 3) + config.embedding_dim
                    + 3 * vocab_size)
    return 4 * (4 * params + 2 * batch_size * seq_len * per_position)
