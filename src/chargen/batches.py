"""The batch maker for a run's batching: stream, sequences, the window framings, documents.

Above the modules that define each kind's batches (data, framing, documents), so that none of
them needs to know the others.
"""

from __future__ import annotations

from .data import SequenceBatches, StreamBatches, _Batches
from .documents import DocumentBatches
from .framing import WindowBatches
from .kinds import RunKind


def make_batches(kind: RunKind | str, ids, batch_size, seq_len, seed,
                 jitter: float = 0.0) -> _Batches:
    """The batches of a run's kind (a RunKind, or the name of a kind without windows): stream,
    sequences, a window framing (framing.py) or documents."""
    kind = RunKind(kind) if isinstance(kind, str) else kind
    if kind.windowed:
        return WindowBatches(ids, batch_size, seed, kind)
    if kind.documents:  # ids: a documents.Documents
        return DocumentBatches(ids, batch_size, seq_len, seed)
    if kind.carries_state:
        return StreamBatches(ids, batch_size, seq_len, seed, jitter)
    return SequenceBatches(ids, batch_size, seq_len, seed)
