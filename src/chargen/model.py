"""Embedding -> fused LSTM/GRU -> linear head. The recurrent state is explicit."""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .regularize import RecurrentRegularizer, make_dropout

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class RNNLanguageModel(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim)
        self.rnn = _CELLS[config.cell](
            config.embedding_dim,
            config.hidden_size,
            config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.head_dropout = make_dropout(config.dropout, config.locked_dropout)
        self.head = nn.Linear(config.hidden_size, vocab_size)
        self.regularizer = RecurrentRegularizer(config)
        if config.tie_weights:
            self.head.weight = self.embedding.weight

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """ids (batch, time) -> logits (batch, time, vocab) and the state after the last step."""
        hidden, state = self.regularizer(self.rnn, self.embedding(ids), state)
        return self.head(self.head_dropout(hidden)), state

    def step(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One token per row (inference): ids (batch,) -> logits (batch, vocab) and the state."""
        from .decode import Decoder

        decoder = Decoder(self)
        logits, layers = decoder.step(ids, decoder.split_state(state))
        return logits, decoder.join_state(layers)

    def init_state(self, batch_size: int, device=None) -> State:
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
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
    head = 0 if config.tie_weights else config.hidden_size * vocab_size
    total = vocab_size * config.embedding_dim + head + vocab_size
    inputs = config.embedding_dim
    for _ in range(config.num_layers):
        total += gates * config.hidden_size * (inputs + config.hidden_size + 2)
        inputs = config.hidden_size
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
