"""One-token decoding steps: ATen's fused cell op per layer, over copies of the weights.

A full nn.LSTM/GRU call per token pays for sequence machinery (oneDNN's multi-layer RNN costs
~6 ms per call on CPU whatever the batch); the per-layer cell op does not. With many rows or
big layers, bf16 copies of the weights run the cell matmuls 2-4x faster on CPUs with bf16
units (measured: 2x512 LSTM at batch 8, 3,311 against 989 steps/s).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .model import RNNLanguageModel, State
from .runtime import bf16_is_fast

# bf16 pays once batch x hidden reaches this (below it, fp32 is as fast or faster: 1x256 at
# batch 1 ran 18k steps/s in fp32 against 9k in bf16).
BF16_MIN_WORK = 1024


def decode_dtype(device: torch.device, batch: int, hidden: int, precision: str = "auto"):
    if precision == "auto" and bf16_is_fast(device) and batch * hidden >= BF16_MIN_WORK:
        return torch.bfloat16
    return None


class Decoder:
    """step(ids, layers) -> (float32 logits, layers); the state is a list, one per layer."""

    def __init__(self, model: RNNLanguageModel, dtype: torch.dtype | None = None):
        def cast(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.detach().to(dtype) if dtype is not None else tensor.detach()

        self.lstm = model.config.cell == "lstm"
        self.cell = torch.lstm_cell if self.lstm else torch.gru_cell
        self.dtype = dtype or model.input_table().dtype
        self.embedding = cast(model.input_table())
        self.layers = [[cast(getattr(model.rnn, f"{name}_l{layer}"))
                        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                       for layer in range(model.config.num_layers)]
        self.head_weight, self.head_bias = cast(model.head.weight), cast(model.head.bias)

    def split_state(self, state: State) -> list:
        if self.lstm:
            h, c = state
            return [(h[i].to(self.dtype), c[i].to(self.dtype)) for i in range(len(self.layers))]
        return [state[i].to(self.dtype) for i in range(len(self.layers))]

    def join_state(self, layers: list) -> State:
        if self.lstm:
            return torch.stack([h for h, _ in layers]), torch.stack([c for _, c in layers])
        return torch.stack(layers)

    def step(self, ids: torch.Tensor, layers: list) -> tuple[torch.Tensor, list]:
        x = F.embedding(ids, self.embedding)
        new_layers = []
        for weights, state in zip(self.layers, layers):
            state = self.cell(x, state, *weights)
            new_layers.append(state)
            x = state[0] if self.lstm else state
        return F.linear(x, self.head_weight, self.head_bias).float(), new_layers
