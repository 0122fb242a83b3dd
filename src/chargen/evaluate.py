"""Loss on held-out ids: nats, bits and perplexity per token (per character at char level)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .data import eval_windows
from .distributed import SINGLE, World, sum_all
from .framing import eval_batches
from .model import RNNLanguageModel, detach_state
from .runtime import autocast, to_device


@dataclass(frozen=True)
class Evaluation:
    nats: float  # per token
    tokens: int
    characters: int | None = None  # the characters the scored tokens stand for, when known
    unit: str = "character"  # what a token is: character (char and byte level) or word

    @property
    def nats_per_char(self) -> float | None:
        """Total loss over the characters covered: comparable across tokenizers."""
        return self.nats * self.tokens / self.characters if self.characters else None

    @property
    def bits(self) -> float:
        return self.nats / math.log(2)

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.nats, 700.0))

    def as_dict(self) -> dict[str, float]:
        return {"nats": self.nats, "bits": self.bits, "perplexity": self.perplexity,
                "tokens": self.tokens}


@torch.no_grad()
def evaluate_ids(model: RNNLanguageModel, ids: np.ndarray, seq_len: int, device: torch.device,
                 dtype: torch.dtype | None = None, max_tokens: int | None = None,
                 world: World = SINGLE) -> Evaluation:
    """Mean next-token loss over `ids`, read as contiguous streams with the state carried
    between chunks (the model sees the text as it would when generating). Under torchrun
    each rank reads its share of the streams and the sums are added up across ranks.
    Window models: the loss of each next token predicted from its window (framing.py's
    eval_batches says which windows). Document runs: `ids` are documents.Documents."""
    if not isinstance(ids, np.ndarray) and hasattr(ids, "units"):
        return _evaluate_documents(model, ids, seq_len, device, dtype, max_tokens, world)
    if model.framing.windowed:
        return _evaluate_windows(model, np.asarray(ids), device, dtype, max_tokens, world)
    if max_tokens is not None and len(ids) > max_tokens + 1:
        ids = ids[: max_tokens + 1]
    was_training = model.training
    model.eval()
    total, count, state = 0.0, 0, None
    try:
        for x, y in eval_windows(np.asarray(ids), seq_len):
            x, y = x[world.rank :: world.size], y[world.rank :: world.size]
            if not len(x):
                continue
            x, y = to_device(x, device), to_device(y, device)
            with autocast(device, dtype):
                logits, state = model(x, state)
            state = detach_state(state)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum")
            total += float(loss)
            count += y.numel()
    finally:
        model.train(was_training)
    total, count = sum_all([total, count], world, device)
    return Evaluation(nats=total / max(count, 1), tokens=int(count))


@torch.no_grad()
def _evaluate_windows(model: RNNLanguageModel, ids: np.ndarray, device, dtype, max_tokens,
                      world: World) -> Evaluation:
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for x, y in eval_batches(ids, model.framing, max_tokens):
            x, y = x[world.rank :: world.size], y[world.rank :: world.size]
            if not len(x):
                continue
            with autocast(device, dtype):
                logits, _ = model(to_device(x, device))
            loss = F.cross_entropy(logits.float().flatten(0, 1), to_device(y, device).flatten(),
                                   reduction="sum")
            total += float(loss)
            count += y.numel()
    finally:
        model.train(was_training)
    total, count = sum_all([total, count], world, device)
    return Evaluation(nats=total / max(count, 1), tokens=int(count))


EVAL_PIECES = 64  # document pieces per evaluation batch


@torch.no_grad()
def _evaluate_documents(model: RNNLanguageModel, docs, seq_len: int, device, dtype, max_tokens,
                        world: World) -> Evaluation:
    """Loss per token over the units' pieces in order, [end] predictions included; at most
    about max_tokens targets."""
    from .documents import IGNORE, gather_pieces, piece_plan

    units, offsets = piece_plan(docs, seq_len)
    was_training = model.training
    model.eval()
    total, count, scored = 0.0, 0, 0
    try:
        for start in range(0, len(units), EVAL_PIECES):
            rows = slice(start, start + EVAL_PIECES)
            x, y = gather_pieces(docs, units[rows], offsets[rows], seq_len)
            scored += int((y != IGNORE).sum())  # every rank's rows: all stop at the same chunk
            x, y = x[world.rank :: world.size], y[world.rank :: world.size]
            if len(x):
                with autocast(device, dtype):
                    logits, _ = model(to_device(x, device))
                y = to_device(y, device).flatten()
                total += float(F.cross_entropy(logits.float().flatten(0, 1), y, reduction="sum",
                                               ignore_index=IGNORE))
                count += int((y != IGNORE).sum())
            if max_tokens is not None and scored >= max_tokens:
                break
    finally:
        model.train(was_training)
    total, count = sum_all([total, count], world, device)
    return Evaluation(nats=total / max(count, 1), tokens=int(count))
