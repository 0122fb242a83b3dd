"""The plain PyTorch program a competent user writes from the tutorials, as a baseline:
nn.Embedding(64) -> nn.LSTM -> nn.Linear, random windows of 100 characters, batch 64, Adam at a
constant 2e-3, float32, no clipping, no schedule, a fresh state for every window. It trains for
a wall-clock budget and is scored by the same evaluators as chargen's runs (`score`).

Used by quality.py (the `plain-loop` contender); it imports chargen only to read a corpus the
way chargen does and to score.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from chargen.evaluate import evaluate_ids


class PlainLSTM(nn.Module):
    """forward(ids, state) -> (logits, state), the contract chargen's evaluator calls."""

    def __init__(self, vocab: int, hidden: int = 256, layers: int = 1, embedding: int = 64):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding)
        self.rnn = nn.LSTM(embedding, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)
        self.kind = _Stream()

    def forward(self, ids, state=None):
        out, state = self.rnn(self.embedding(ids), state)
        return self.head(out), state


class _Stream:
    windowed = documents = False  # what chargen's evaluator asks of a model's kind


def train_plain(train_ids: np.ndarray, vocab: int, budget_s: float, hidden: int = 256,
                layers: int = 1, batch: int = 64, seq_len: int = 100, lr: float = 2e-3,
                seed: int = 0) -> tuple[PlainLSTM, int]:
    """-> (the model after `budget_s` seconds of training, steps made)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = PlainLSTM(vocab, hidden, layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    started, steps = time.monotonic(), 0
    while time.monotonic() - started < budget_s:
        offsets = rng.integers(0, len(train_ids) - seq_len - 1, batch)
        window = torch.from_numpy(train_ids[offsets[:, None] + np.arange(seq_len + 1)]
                                  .astype(np.int64))
        logits, _ = model(window[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), window[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps += 1
    return model, steps


@torch.no_grad()
def fresh_windows_loss(model: nn.Module, ids: np.ndarray, window: int = 100) -> float:
    """Mean next-character loss over `ids` cut into windows, each read from a zero state: the
    plain programs' own (harder) measure."""
    was_training = model.training
    model.eval()
    count = (len(ids) - 1) // window
    inputs = torch.from_numpy(ids[: count * window].astype(np.int64)).view(count, window)
    targets = torch.from_numpy(ids[1 : count * window + 1].astype(np.int64)).view(count, window)
    total = 0.0
    for start in range(0, count, 256):
        logits, _ = model(inputs[start : start + 256])
        total += float(F.cross_entropy(logits.float().flatten(0, 1),
                                       targets[start : start + 256].flatten(), reduction="sum"))
    model.train(was_training)
    return total / (count * window)


def score(model: nn.Module, val_ids: np.ndarray) -> dict[str, float]:
    """Both evaluators over the same validation ids, in float32 on the CPU: chargen's (the state
    carried through the text) and fresh windows of 100."""
    carried = evaluate_ids(model, val_ids, 100, torch.device("cpu")).nats
    return {"carried": carried, "fresh": fresh_windows_loss(model, val_ids)}
