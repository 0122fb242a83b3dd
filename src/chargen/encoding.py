"""How token ids enter the recurrent layers. All three encodings are a lookup in a
(rows, width) table: a learned embedding, the identity (one-hot), or one column holding
id / vocabulary size (the tutorials' scalar feature). Window models have one more row, the
padding id, which no real token shares: an all-zero one-hot row, -1 as a scalar (real
tokens lie in [0, 1)), and a zero embedding row that is never trained."""

from __future__ import annotations

import torch

from .config import ModelConfig

PAD_SCALAR = -1.0


def input_width(config: ModelConfig, vocab_size: int) -> int:
    """Features per time step for one token."""
    return {"embedding": config.embedding_dim, "onehot": vocab_size, "scalar": 1}[
        config.input_encoding]


def fixed_table(encoding: str, vocab_size: int, rows: int) -> torch.Tensor:
    """The (rows, width) lookup table of the one-hot or scalar encoding; rows past
    vocab_size are padding."""
    if encoding == "onehot":
        table = torch.zeros(rows, vocab_size)
        table[:vocab_size] = torch.eye(vocab_size)
        return table
    table = (torch.arange(rows, dtype=torch.float32) / vocab_size).unsqueeze(1)
    table[vocab_size:] = PAD_SCALAR
    return table
