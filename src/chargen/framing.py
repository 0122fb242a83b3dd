"""The tutorials' window framings: each training example is the `window` ids before a target
position -> the id at that position, one prediction per example.

- window:          every full window (stride 1), as tutorials A and B cut their text;
- variable-window: a random 1..window ids before each position, left-padded (tutorial A's
                   fourth model), drawn afresh each epoch;
- prefix:          everything before each position (at most `window` ids), left-padded
                   (tutorial D's every-prefix framing, padded to the window).

The padding id is `vocab_size`: a row of the model's input table only, never a target and
never produced. Batches are gathered per step from the (memory-mapped) id array, never
materialised as corpus x window, and each is a pure function of (seed, step) like the
batchers in data.py; an epoch is one pass over every target position, shuffled.
"""

from __future__ import annotations

import numpy as np
import torch

from .config import WINDOWED, DataConfig
from .errors import CorpusError
from .kinds import RunKind


def context_length(data: DataConfig) -> int:
    """Tokens one training example reads: what each part of the split must hold (+1)."""
    if data.batching == "window":
        return data.window
    if data.batching == "documents":  # units, not id ranges, are split (documents.py)
        return 1
    return 1 if data.batching in WINDOWED else data.seq_len


def steps_per_example(data: DataConfig) -> int:
    """Time steps the model runs for one training example."""
    return data.window if data.batching in WINDOWED else data.seq_len


def gather_windows(ids: np.ndarray, targets: np.ndarray, lengths: np.ndarray,
                   kind: RunKind) -> tuple[torch.Tensor, torch.Tensor]:
    """-> inputs (rows, window): the `lengths` ids before each target, left-padded, and the
    targets (rows, 1)."""
    width = kind.window
    columns = np.arange(width)
    offsets = targets[:, None] - width + columns
    inputs = np.asarray(ids[np.maximum(offsets, 0)], dtype=np.int64)
    inputs[columns[None, :] < width - lengths[:, None]] = kind.pad_id
    labels = np.asarray(ids[targets], dtype=np.int64)[:, None]
    return torch.from_numpy(inputs), torch.from_numpy(labels)


def context_lengths(targets: np.ndarray, kind: RunKind) -> np.ndarray:
    """The longest context each target has under the framing (all of `window` if it can)."""
    return np.minimum(targets, kind.window)


class WindowBatches:
    def __init__(self, ids: np.ndarray, batch_size: int, seed: int, kind: RunKind):
        self.ids, self.batch_size, self.seed, self.kind = ids, batch_size, seed, kind
        self.n_targets = len(ids) - kind.first_target
        if self.n_targets < 1:
            raise CorpusError(f"the training text ({len(ids):,} tokens) is shorter than one window"
                              f" of {kind.window} + 1 tokens; give more text or a smaller "
                              "--window")
        # Keras counts the last, partial batch too; here it is filled from the epoch's start.
        self.steps_per_epoch = -(-self.n_targets // batch_size)
        self._plan_epoch, self._plan = -1, (np.empty(0), np.empty(0))

    def position(self, step: int) -> tuple[int, int]:
        return divmod(step, self.steps_per_epoch)

    def _epoch_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.n_targets)
        targets = np.resize(order, self.steps_per_epoch * self.batch_size) + self.kind.first_target
        lengths = context_lengths(targets, self.kind)
        if self.kind.batching == "variable-window":
            lengths = rng.integers(1, lengths + 1)
        return targets, lengths

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = self.position(step)
        if epoch != self._plan_epoch:
            self._plan, self._plan_epoch = self._epoch_plan(epoch), epoch
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        targets, lengths = (part[rows] for part in self._plan)
        return gather_windows(self.ids, targets, lengths, self.kind)

    def starts_new_stream(self, step: int) -> bool:
        return True


DEFAULT_EVAL_WINDOWS = 10_000
EVAL_BATCH = 256


def eval_batches(ids: np.ndarray, kind: RunKind, max_tokens: int | None = None):
    """Evenly spaced target positions of `ids`, each with its longest context: at most
    max_tokens / window of them (the input ids read), or DEFAULT_EVAL_WINDOWS when no
    budget is given. Yields (inputs, targets) batches."""
    first = kind.first_target
    available = len(ids) - first
    if available < 1:
        return
    budget = DEFAULT_EVAL_WINDOWS if max_tokens is None else max(1, max_tokens // kind.window)
    count = min(available, budget)
    targets = np.unique(np.linspace(first, len(ids) - 1, count).round().astype(np.int64))
    for start in range(0, len(targets), EVAL_BATCH):
        chunk = targets[start : start + EVAL_BATCH]
        yield gather_windows(ids, chunk, context_lengths(chunk, kind), kind)
