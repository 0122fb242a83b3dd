"""The batch maker for a run's batching: stream, sequences, the window framings, documents.

Above the modules that define each kind's batches (data, framing, documents), so that none of
them needs to know the others.
"""

from __future__ import annotations

from .config import WINDOWED
from .data import SequenceBatches, StreamBatches, _Batches
from .documents import DocumentBatches
from .framing import WindowBatches


def make_batches(kind: str, ids, batch_size, seq_len, seed, framing=None,
                 jitter: float = 0.0) -> _Batches:
    """The batcher of a framing: stream, sequences, or a window framing (framing.py, which
    then needs the model's `framing`)."""
    if kind in WINDOWED:
        return WindowBatches(ids, batch_size, seed, framing)
    if kind == "documents":  # ids: a documents.Documents
        return DocumentBatches(ids, batch_size, seq_len, seed)
    if kind == "stream":
        return StreamBatches(ids, batch_size, seq_len, seed, jitter)
    return SequenceBatches(ids, batch_size, seq_len, seed)
