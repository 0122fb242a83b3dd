"""The generation loop's choices on torch: small pure functions over (rows, vocab) logits, and
TorchOps, the engine's backend (nplogits.py is its numpy twin for the ONNX export)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return logits / temperature if temperature != 1.0 else logits


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (k=0 keeps all)."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    threshold = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < threshold, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of tokens whose probability reaches p."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # mass of the tokens ranked above
    drop = before >= p
    drop[..., 0] = False  # the likeliest stays, even when p rounds to 0 in float32
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


def invert_cdf(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """(rows, vocab) probabilities and (rows, 1) uniform numbers in [0, 1) -> (rows,) ids: each
    number scaled to its row's total mass and located in the cumulative distribution (right
    side, so that an id of zero probability is never chosen). Three cheap ops where
    torch.multinomial takes ten or so; it matters when one token is drawn per step."""
    cdf = probs.cumsum(dim=-1)
    return torch.searchsorted(cdf, uniform * cdf[..., -1:], right=True).squeeze(-1)


def banned_bias(vocab_size: int, banned: Sequence[int], device) -> torch.Tensor | None:
    """An additive (vocab,) mask: -inf at the banned ids (built once, added every step)."""
    if not banned:
        return None
    bias = torch.zeros(vocab_size, device=device)
    bias[list(banned)] = float("-inf")
    return bias


def penalize_repetition(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty: the logits of ids already in the text are divided by
    `penalty` when positive and multiplied by it when negative (penalty > 1 discourages)."""
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


class TorchOps:
    """The engine's array operations on torch tensors, on one device."""

    def __init__(self, device: torch.device):
        self.device = device

    def seen(self, rows: int, vocab: int, prompt) -> torch.Tensor:
        """(rows, vocab) booleans: which ids each row's text holds, the prompt's to start."""
        seen = torch.zeros(rows, vocab, dtype=torch.bool, device=self.device)
        if isinstance(prompt, list):  # one prompt per row
            for row, ids in enumerate(prompt):
                seen[row, torch.as_tensor(ids, device=self.device)] = True
        else:
            seen[:, torch.as_tensor(prompt, device=self.device)] = True
        return seen

    def mark(self, seen: torch.Tensor, ids: torch.Tensor) -> None:
        seen[torch.arange(len(ids), device=self.device), ids] = True

    penalize = staticmethod(penalize_repetition)
    top_k = staticmethod(top_k_filter)
    top_p = staticmethod(top_p_filter)

    @staticmethod
    def divide_rows(logits: torch.Tensor, temperatures: Sequence[float]) -> torch.Tensor:
        if temperatures.count(temperatures[0]) == len(temperatures):
            return apply_temperature(logits, temperatures[0])
        return logits / torch.tensor(temperatures, device=logits.device).unsqueeze(1)

    @staticmethod
    def softmax(logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)

    def invert_cdf(self, probs: torch.Tensor, uniforms: np.ndarray) -> torch.Tensor:
        uniform = torch.from_numpy(uniforms).unsqueeze(1)
        return invert_cdf(probs, uniform if self.device.type == "cpu" else uniform.to(self.device))

    def bias(self, vocab: int, banned: Sequence[int]) -> torch.Tensor | None:
        return banned_bias(vocab, banned, self.device)

    @staticmethod
    def greedy(logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)

    @staticmethod
    def copy(logits: torch.Tensor) -> torch.Tensor:
        return logits.clone()

    def index(self, rows: list[int]) -> torch.Tensor:
        return torch.tensor(rows, dtype=torch.long, device=self.device)

    def empty_ids(self, rows: int) -> torch.Tensor:
        return torch.zeros(rows, dtype=torch.long, device=self.device)

    @staticmethod
    def take(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return values.index_select(0, rows)

    @staticmethod
    def cat(parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(parts)
