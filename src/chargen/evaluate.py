"""Loss on held-out ids: nats, bits and perplexity per token (per character at char level)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .data import UNSCORED, eval_windows
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
    unknown: int = 0  # tokens of the text scored as the unknown id (unseen characters or words)
    text_tokens: int = 0  # the text's tokens, scored or not (0: not counted)

    @property
    def unknown_share(self) -> float:
        return self.unknown / self.text_tokens if self.text_tokens else 0.0

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


@torch.no_grad()
def evaluate_ids(model: RNNLanguageModel, ids: np.ndarray, seq_len: int, device: torch.device,
                 dtype: torch.dtype | None = None, max_tokens: int | None = None,
                 world: World = SINGLE) -> Evaluation:
    """Mean next-token loss over `ids`, read as contiguous streams with the state carried
    between chunks (the model sees the text as it would when generating). Under torchrun
    each rank reads its share of the streams and the sums are added up across ranks.
    Window models: the loss of each next token predicted from its window (framing.py's
    eval_batches says which windows). Document runs: `ids` are documents.Documents."""
    if model.kind.documents:
        return _evaluate_documents(model, ids, seq_len, device, dtype, max_tokens, world)
    if model.kind.windowed:
        return _evaluate_windows(model, np.asarray(ids), device, dtype, max_tokens, world)
    if max_tokens is not None and len(ids) > max_tokens + 1:
        ids = ids[: max_tokens + 1]
    return _score(model, eval_windows(np.asarray(ids), seq_len), device, dtype, world, carry=True)


def _evaluate_windows(model: RNNLanguageModel, ids: np.ndarray, device, dtype, max_tokens,
                      world: World) -> Evaluation:
    return _score(model, eval_batches(ids, model.kind, max_tokens), device, dtype, world)


EVAL_PIECES = 64  # document pieces per evaluation batch


def _evaluate_documents(model: RNNLanguageModel, docs, seq_len: int, device, dtype, max_tokens,
                        world: World) -> Evaluation:
    """Loss per token over the units' pieces in order, [end] predictions included; at most
    about max_tokens targets."""
    return _score(model, _document_batches(docs, seq_len, max_tokens), device, dtype, world)


def _document_batches(docs, seq_len: int, max_tokens: int | None):
    from .documents import gather_pieces, piece_plan

    units, offsets = piece_plan(docs, seq_len)
    scored = 0  # over every rank's rows, so that all ranks stop at the same batch
    for start in range(0, len(units), EVAL_PIECES):
        rows = slice(start, start + EVAL_PIECES)
        x, y = gather_pieces(docs, units[rows], offsets[rows], seq_len)
        yield x, y
        scored += int((y != IGNORED).sum())
        if max_tokens is not None and scored >= max_tokens:
            return


IGNORED = UNSCORED  # targets that are not scored (padding): F.cross_entropy's default


@torch.no_grad()
def _score(model: RNNLanguageModel, batches, device, dtype, world: World,
           carry: bool = False) -> Evaluation:
    """Summed next-token loss over (inputs, targets) batches, each rank scoring its share of
    the rows, added up across ranks; `carry`: the state runs on from batch to batch."""
    was_training = model.training
    model.eval()
    total, count, state = 0.0, 0, None
    try:
        for x, y in batches:
            x, y = x[world.rank :: world.size], y[world.rank :: world.size]
            if not len(x):
                continue
            with autocast(device, dtype):
                logits, state = model(to_device(x, device), state if carry else None)
            state = detach_state(state) if carry else None
            y = to_device(y, device).flatten()
            total += float(F.cross_entropy(logits.float().flatten(0, 1), y, reduction="sum",
                                           ignore_index=IGNORED))
            count += int((y != IGNORED).sum())
    finally:
        model.train(was_training)
    total, count = sum_all([total, count], world, device)
    return Evaluation(nats=total / max(count, 1), tokens=int(count))
