"""A run's kind, built once from its settings (kind_of): what differs between stream and
sequence runs, the tutorials' window framings and document runs, asked of this object rather
than of the settings. The model carries it (RNNLanguageModel.kind); torch-free.

- stream:          contiguous streams, the recurrent state carried from batch to batch;
- sequences:       shuffled independent sequences of seq_len;
- window, variable-window, prefix: each example is the `window` ids before a target
                   (framing.py), read afresh: generation re-reads a window for every token;
- documents:       one unit (line, sentence, paragraph) per row, [start] ... [end].
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import WINDOWED, DataConfig

PRIME_TOKENS = 64  # a random prompt's length where the kind sets none (a window sets its own)


@dataclass(frozen=True)
class RunKind:
    batching: str = "stream"
    window: int = 0
    layout: str = "time-steps"
    vocab_size: int = 0

    @property
    def windowed(self) -> bool:
        """Each prediction reads the `window` ids before it from a zero state."""
        return self.batching in WINDOWED

    @property
    def documents(self) -> bool:
        return self.batching == "documents"

    @property
    def carries_state(self) -> bool:
        """Training carries the recurrent state from one batch to the next."""
        return self.batching == "stream"

    @property
    def pad_id(self) -> int | None:
        """The id that left-pads short windows: a row of the input table only."""
        return self.vocab_size if self.windowed else None

    @property
    def first_target(self) -> int:
        """The first position with a full context under this kind."""
        return self.window if self.batching == "window" else 1

    @property
    def end_id(self) -> int | None:
        """The id that ends a document: a sample stops there. The two markers are the last
        two ids of a document run's vocabulary ([start], then [end])."""
        return self.vocab_size - 1 if self.documents else None

    @property
    def start_id(self) -> int | None:
        return self.vocab_size - 2 if self.documents else None

    def as_dict(self) -> dict:
        """What an export records of the kind (RunKind(**that) rebuilds it)."""
        return {"batching": self.batching, "window": self.window, "layout": self.layout,
                "vocab_size": self.vocab_size}

    @property
    def prime_tokens(self) -> int:
        """How many tokens a random prompt takes (documents: none, a unit starts at [start])."""
        return 0 if self.documents else self.window if self.windowed else PRIME_TOKENS


STREAM = RunKind()


def kind_of(data: DataConfig, vocab_size: int) -> RunKind:
    if data.batching not in WINDOWED:
        return RunKind(data.batching, vocab_size=vocab_size)
    return RunKind(data.batching, data.window, data.window_layout, vocab_size)
