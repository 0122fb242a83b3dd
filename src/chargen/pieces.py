"""Text from a generation: stop sequences, and generate()/sample() over a model's batches of
text pieces. No torch import: the run and the ONNX export share it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence


class StopWatch:
    """Cuts a sample at the first of the stop sequences (which is not emitted), holding back
    just enough text to recognise a stop sequence that arrives over several pieces."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.pending, self.done = "", False

    def feed(self, piece: str) -> str:
        if self.done:
            return ""
        self.pending += piece
        cuts = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if cuts:
            self.done = True
            out, self.pending = self.pending[: min(cuts)], ""
            return out
        ready = len(self.pending) - self.hold
        out, self.pending = self.pending[: max(ready, 0)], self.pending[max(ready, 0) :]
        return out

    def flush(self) -> str:
        out, self.pending = ("" if self.done else self.pending), ""
        return out


class SampleMethods:
    """generate() and sample() over the class's generate_batch(prime, **settings), which
    yields one text piece per sample per step (a run, or an ONNX export)."""

    def generate(self, prime: str | None = None, **settings) -> Iterator[str]:
        """Yields the continuation of `prime` piece by piece (one sample; a step that makes no
        text, inside a multi-byte character of a byte run, yields nothing)."""
        for pieces in self.generate_batch(prime, **{**settings, "num": 1}):
            yield pieces[0]

    def sample(self, prime: str | None = None, **settings) -> list[str]:
        """Complete continuations, one string per sample (num=N for several, in one batch)."""
        texts = [[] for _ in range(settings.get("num", 1))]
        for pieces in self.generate_batch(prime, **settings):
            for text, piece in zip(texts, pieces):
                text.append(piece)
        return ["".join(text) for text in texts]
