"""The logit functions of logits.py over numpy arrays, and NumpyOps, the engine's backend for
generation without torch (the ONNX export). Rows are samples: logits are (rows, vocab) float32.
The same random numbers give the same ids as the torch backend."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    return logits / np.float32(temperature) if temperature != 1.0 else logits


def top_k_filter(logits: np.ndarray, k: int) -> np.ndarray:
    """Keep the k largest logits of each row (k=0 keeps all)."""
    vocab = logits.shape[-1]
    if k <= 0 or k >= vocab:
        return logits
    threshold = np.partition(logits, vocab - k, axis=-1)[..., vocab - k : vocab - k + 1]
    return np.where(logits < threshold, -np.inf, logits).astype(logits.dtype)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def top_p_filter(logits: np.ndarray, p: float) -> np.ndarray:
    """Nucleus filtering: keep the smallest set of tokens whose probability reaches p."""
    if p >= 1.0:
        return logits
    order = np.argsort(-logits, axis=-1, kind="stable")
    sorted_logits = np.take_along_axis(logits, order, axis=-1)
    probs = softmax(sorted_logits)
    before = np.cumsum(probs, axis=-1) - probs  # mass of the tokens ranked above
    drop = before >= p
    drop[..., 0] = False  # the likeliest stays, even when p rounds to 0 in float32
    sorted_logits = np.where(drop, -np.inf, sorted_logits).astype(logits.dtype)
    filtered = np.empty_like(logits)
    np.put_along_axis(filtered, order, sorted_logits, axis=-1)
    return filtered


def invert_cdf(probs: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """As logits.invert_cdf: (rows, vocab) and (rows, 1) -> (rows,) int64 ids."""
    cdf = np.cumsum(probs, axis=-1, dtype=np.float32)
    target = uniform.astype(np.float32) * cdf[:, -1:]
    return np.count_nonzero(cdf <= target, axis=-1).astype(np.int64)  # searchsorted, right


def penalize_repetition(logits: np.ndarray, seen: np.ndarray, penalty: float) -> np.ndarray:
    """CTRL's repetition penalty, as logits.penalize_repetition."""
    penalized = np.where(logits > 0, logits / np.float32(penalty), logits * np.float32(penalty))
    return np.where(seen, penalized, logits)


class NumpyOps:
    """The engine's array operations on numpy arrays."""

    @staticmethod
    def seen(rows: int, vocab: int, prompt) -> np.ndarray:
        seen = np.zeros((rows, vocab), dtype=bool)
        seen[:, np.asarray(prompt, dtype=np.int64)] = True
        return seen

    @staticmethod
    def mark(seen: np.ndarray, ids: np.ndarray) -> None:
        seen[np.arange(len(ids)), ids] = True

    penalize = staticmethod(penalize_repetition)
    top_k = staticmethod(top_k_filter)
    top_p = staticmethod(top_p_filter)

    @staticmethod
    def divide_rows(logits: np.ndarray, temperatures: Sequence[float]) -> np.ndarray:
        if temperatures.count(temperatures[0]) == len(temperatures):
            return apply_temperature(logits, temperatures[0])
        return logits / np.asarray(temperatures, dtype=np.float32)[:, None]

    @staticmethod
    def softmax(logits: np.ndarray) -> np.ndarray:
        return softmax(logits).astype(np.float32)

    @staticmethod
    def invert_cdf(probs: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        return invert_cdf(probs, uniforms[:, None])

    @staticmethod
    def bias(vocab: int, banned: Sequence[int]) -> np.ndarray | None:
        if not banned:
            return None
        bias = np.zeros(vocab, dtype=np.float32)
        bias[list(banned)] = -np.inf
        return bias

    @staticmethod
    def greedy(logits: np.ndarray) -> np.ndarray:
        return logits.argmax(axis=-1)

    @staticmethod
    def copy(logits: np.ndarray) -> np.ndarray:
        return logits.copy()

    @staticmethod
    def index(rows: list[int]) -> np.ndarray:
        return np.asarray(rows, dtype=np.int64)

    @staticmethod
    def empty_ids(rows: int) -> np.ndarray:
        return np.zeros(rows, dtype=np.int64)

    @staticmethod
    def take(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return values[rows]

    @staticmethod
    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts)
