"""Token ids -> training batches. Every batch is a pure function of (seed, step), so a
resumed run sees exactly the batches it would have seen without the stop."""

from __future__ import annotations

import numpy as np
import torch

from .errors import CorpusError


def split_sizes(n_tokens: int, val_fraction: float, seq_len: int) -> tuple[int, int]:
    """(train, validation) sizes of a contiguous split: the last `val_fraction` is validation
    (none with val_fraction 0); refused when either part cannot hold one sequence."""
    n_val = int(n_tokens * val_fraction)
    need = seq_len + 1
    if val_fraction and n_val < need:
        raise CorpusError(
            f"the validation part ({n_val:,} tokens, {val_fraction:g} of {n_tokens:,}) cannot hold "
            f"one sequence of {seq_len} + 1 tokens; give more text, a larger --val-fraction "
            "or a smaller --seq-len"
        )
    if n_tokens - n_val < need:
        raise CorpusError(
            f"the training part ({n_tokens - n_val:,} tokens) is shorter than one sequence of "
            f"{seq_len} + 1 tokens; give more text or a smaller --seq-len"
        )
    return n_tokens - n_val, n_val


def split_ids(ids: np.ndarray, val_fraction: float, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    n_train, _ = split_sizes(len(ids), val_fraction, seq_len)
    return ids[:n_train], ids[n_train:]


class _Batches:
    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, seed: int):
        self.ids = ids
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.seed = seed
        self._offsets_epoch = -1
        self._offsets = np.empty(0, dtype=np.int64)

    def _gather(self, starts: np.ndarray, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        window = self.ids[starts[:, None] + np.arange(length + 1)]
        window = torch.from_numpy(window.astype(np.int64))
        return window[:, :-1], window[:, 1:]

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch])

    def position(self, step: int) -> tuple[int, int]:
        return divmod(step, self.steps_per_epoch)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = self.position(step)
        if epoch != self._offsets_epoch:
            self._offsets = self._epoch_offsets(epoch)
            self._offsets_epoch = epoch
        return self._gather(self._starts(index), self._length(index))

    def _length(self, index: int) -> int:
        return self.seq_len

    def starts_new_stream(self, step: int) -> bool:
        """Whether the hidden state carried into this step must be reset."""
        return True


class SequenceBatches(_Batches):
    """Independent sequences: the text cut into chunks of seq_len (+1 for the targets),
    shuffled each epoch; each sequence starts from a zero state."""

    def __init__(self, ids, batch_size, seq_len, seed):
        super().__init__(ids, batch_size, seq_len, seed)
        self.n_chunks = (len(ids) - 1) // seq_len
        if self.n_chunks < 1:
            raise CorpusError(f"the training text is shorter than one sequence of {seq_len} tokens")
        self.steps_per_epoch = max(1, self.n_chunks // batch_size)

    def _epoch_offsets(self, epoch: int) -> np.ndarray:
        rng = self._rng(epoch)
        shift = int(rng.integers(0, len(self.ids) - 1 - self.n_chunks * self.seq_len + 1))
        order = rng.permutation(self.n_chunks)
        if self.n_chunks < self.batch_size:
            order = np.resize(order, self.batch_size)
        return shift + order * self.seq_len

    def _starts(self, index: int) -> np.ndarray:
        return self._offsets[index * self.batch_size : (index + 1) * self.batch_size]


class StreamBatches(_Batches):
    """char-rnn style: the text split into batch_size contiguous streams read in order, so
    row b of one batch continues row b of the previous one and the state is carried over."""

    def __init__(self, ids, batch_size, seq_len, seed, jitter: float = 0.0):
        super().__init__(ids, batch_size, seq_len, seed)
        # Each window boundary moves by up to +-reach tokens, so the BPTT length varies in
        # seq_len +- 2 reach (mean seq_len) and the streams are still read exactly once.
        self.reach = min(round(jitter * seq_len / 2), (seq_len - 1) // 2)
        self._bounds = np.arange(0, 1)
        self.stream_len = (len(ids) - 1) // batch_size
        self.steps_per_epoch = self.stream_len // seq_len
        if self.steps_per_epoch < 1:
            raise CorpusError(
                f"the training text ({len(ids):,} tokens) is too short for {batch_size} streams of "
                f"at least {seq_len} tokens; give more text or a smaller --batch-size / --seq-len"
            )

    def _epoch_offsets(self, epoch: int) -> np.ndarray:
        # A random shift each epoch so that sequence boundaries fall in new places.
        spare = self.stream_len - self.steps_per_epoch * self.seq_len
        shift = int(self._rng(epoch).integers(0, spare + 1))
        self._bounds = np.arange(self.steps_per_epoch + 1) * self.seq_len
        if self.reach:
            moves = np.random.default_rng([self.seed, epoch, 1]).integers(
                -self.reach, self.reach + 1, size=self.steps_per_epoch - 1)
            self._bounds[1:-1] += moves
        return shift + np.arange(self.batch_size) * self.stream_len

    def _starts(self, index: int) -> np.ndarray:
        return self._offsets + self._bounds[index]

    def _length(self, index: int) -> int:
        return int(self._bounds[index + 1] - self._bounds[index])

    def starts_new_stream(self, step: int) -> bool:
        return self.position(step)[1] == 0


def eval_windows(ids: np.ndarray, seq_len: int, max_streams: int = 64):
    """Cover `ids` exactly once as contiguous streams read in chunks, for evaluation with the
    state carried across chunks. Yields (inputs, targets) pairs of shape (streams, <=seq_len);
    targets of UNSCORED are padding."""
    n_pred = len(ids) - 1
    streams = max(1, min(max_streams, n_pred // max(seq_len, 1)))
    stream_len = n_pred // streams
    used = streams * stream_len
    inputs = ids[:used].reshape(streams, stream_len)
    targets = ids[1 : used + 1].reshape(streams, stream_len)
    for start in range(0, stream_len, seq_len):
        x = torch.from_numpy(inputs[:, start : start + seq_len].astype(np.int64))
        y = torch.from_numpy(targets[:, start : start + seq_len].astype(np.int64))
        yield x, y
    if used < n_pred:  # the last few tokens continue the last stream; the other rows idle
        yield _tail_batch(ids, used, n_pred, streams)


UNSCORED = -100  # a target that is not scored (F.cross_entropy's default ignore_index)


def _tail_batch(ids: np.ndarray, used: int, n_pred: int, streams: int):
    x = torch.zeros(streams, n_pred - used, dtype=torch.int64)
    y = torch.full_like(x, UNSCORED)
    x[-1] = torch.from_numpy(np.asarray(ids[used:n_pred]).astype(np.int64))
    y[-1] = torch.from_numpy(np.asarray(ids[used + 1 : n_pred + 1]).astype(np.int64))
    return x, y
