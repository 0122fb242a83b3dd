"""The logit functions of sampling.py over numpy arrays, for generation without torch (the
ONNX export). Rows are samples: logits are (batch, vocab) float32."""

from __future__ import annotations

import numpy as np

from .config import SampleConfig


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


def sample_categorical(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row by inverting the cumulative distribution; an id of zero probability
    is never chosen (its cumulative value equals its predecessor's)."""
    cdf = np.cumsum(probs, axis=-1)
    uniform = rng.random((probs.shape[0], 1)) * cdf[:, -1:]
    return np.minimum((cdf <= uniform).sum(axis=-1), probs.shape[-1] - 1)


def penalize_repetition(logits: np.ndarray, seen: np.ndarray, penalty: float) -> np.ndarray:
    """CTRL's repetition penalty, as sampling.penalize_repetition."""
    penalized = np.where(logits > 0, logits / np.float32(penalty), logits * np.float32(penalty))
    return np.where(seen, penalized, logits)


def choose(logits: np.ndarray, config: SampleConfig, rng: np.random.Generator) -> np.ndarray:
    """(batch, vocab) logits (banned ids already at -inf) -> (batch,) int64 next ids."""
    if config.greedy or config.temperature == 0:
        return logits.argmax(axis=-1)
    logits = apply_temperature(logits, config.temperature)
    logits = top_p_filter(top_k_filter(logits, config.top_k), config.top_p)
    return sample_categorical(softmax(logits), rng).astype(np.int64)
