"""Document mode (--batching documents): each line, sentence or paragraph of the corpus is a
training sequence of its own, [start] + the unit's tokens + [end], so that generation
produces whole units and stops where they end.

Markers. A document run's vocabulary is its tokenizer's plus two ids appended at the end,
[start] (= base vocab_size) and [end] (= base vocab_size + 1), recorded in tokenizer.json as
"markers"; every other run's tokenizer.json and weights are exactly as before. ids.npy holds
the base tokenizer's ids of the whole text, as for any run: the markers are put in when a
batch is gathered, in place of the separators, which are left out:
- line:      each run of consecutive line-end tokens ("\\n", or a word token holding one);
- paragraph: each run of consecutive line-end tokens holding two or more line ends (a blank
             line with nothing on it);
- sentence:  each run of whitespace after a token ending in . ! ? or ... (the mark stays in
             the sentence), and any whitespace run holding a blank line (headings).
Empty units are skipped.

Batches. A unit of L tokens is the sequence S = [start] t1 .. tL [end]; a row reads at most
seq_len inputs of it, so S is cut into pieces of seq_len inputs + their seq_len targets,
sharing one token with the next piece: only the first piece reads [start], only the last
predicts [end], and every piece starts from a zero state. Rows are right-padded (the padding
inputs are [end], after the last real target, so they change no prediction that counts; the
padding targets are IGNORE, never a target), and a batch is as wide as its longest row. The
unit bounds are found once, with vectorised numpy over the (memory-mapped) id array; a batch
gathers its rows from that array, and is a pure function of (seed, step).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from .errors import CorpusError

if TYPE_CHECKING:  # torch is imported where tensors are made: an ONNX export's sampler reads
    import torch  # a document run's tokenizer and markers from here without torch

log = logging.getLogger("chargen")
UNITS = ("line", "sentence", "paragraph")
MARKERS = ("[START]", "[END]")
IGNORE = -100  # F.cross_entropy's default ignore_index
SENTENCE_ENDS = ".!?\u2026"


class MarkedTokenizer:
    """A tokenizer with the two document markers appended to its vocabulary. Encoding is the
    base tokenizer's (markers are never produced from text); decoding leaves markers out.
    Line runs never sample a token holding a line end: [end] takes its place."""

    def __init__(self, base, unit: str = "line"):
        self.base, self.document_unit = base, unit
        self.start_id = base.vocab_size
        self.end_id = base.vocab_size + 1

    def __getattr__(self, name):  # kind, unit, unknown_id, encode, unknown_chars ...
        return getattr(self.base, name)

    @property
    def vocab_size(self) -> int:
        return self.base.vocab_size + 2

    @cached_property
    def never_sample(self) -> list[int]:
        banned = [*self.base.never_sample, self.start_id]
        if self.document_unit == "line":
            banned += np.flatnonzero(Separators.of(self.base).line_end).tolist()
        return banned

    def _text_ids(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        return ids[ids < self.start_id]

    def decode(self, ids) -> str:
        return self.base.decode(self._text_ids(ids))

    def stream_decoder(self):
        decode = self.base.stream_decoder()
        return lambda ids: decode(self._text_ids(ids))

    def to_dict(self) -> dict:
        return {**self.base.to_dict(), "markers": list(MARKERS), "document_unit": self.document_unit}


def load_tokenizer(raw: dict):
    """Any run's tokenizer from its tokenizer.json: a document run's carries the markers."""
    from .tokenizer import tokenizer_from_dict

    if isinstance(raw, dict) and raw.get("type") is not None and "markers" in raw:
        base = tokenizer_from_dict({k: v for k, v in raw.items()
                                    if k not in ("markers", "document_unit")})
        return MarkedTokenizer(base, raw.get("document_unit", "line"))
    return tokenizer_from_dict(raw)


def text_tokenizer(tokenizer):
    """A document run's tokenizer without its two markers; any other tokenizer as it is."""
    return tokenizer.base if isinstance(tokenizer, MarkedTokenizer) else tokenizer


def with_markers(tokenizer, data):
    """The tokenizer a run with these data settings uses (a cached run's may be marked)."""
    base = text_tokenizer(tokenizer)
    return MarkedTokenizer(base, data.document_unit) if data.batching == "documents" else base


def document_unit(tokenizer) -> str | None:
    """The unit of a document run, None for any other."""
    return tokenizer.document_unit if isinstance(tokenizer, MarkedTokenizer) else None


# -- finding the units ----------------------------------------------------------------------
def _token_texts(base) -> list[str]:
    if base.kind == "byte":  # only ASCII bytes can be separators
        return [chr(b) if b < 128 else "" for b in range(256)]
    return ["", *(base.chars if base.kind == "char" else base.words)]  # id 0: unknown


@dataclass(frozen=True)
class Separators:
    """Per base id: how many "\n" it holds, whether it ends a line (holds "\n" or "\r": text
    kept with --keep-crlf splits as normalised text does), whether it is whitespace, whether
    it ends a sentence."""

    newlines: np.ndarray
    line_end: np.ndarray
    space: np.ndarray
    sentence_end: np.ndarray

    @classmethod
    def of(cls, tokenizer) -> Separators:
        texts = _token_texts(text_tokenizer(tokenizer))
        space = np.array([t != "" and t.isspace() for t in texts])
        return cls(np.array([min(t.count("\n"), 255) for t in texts], dtype=np.uint8),
                   space & np.array(["\n" in t or "\r" in t for t in texts]), space,
                   np.array([t != "" and t[-1] in SENTENCE_ENDS for t in texts]))


def unit_bounds(ids: np.ndarray, separators: Separators, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """-> (starts, ends) int64 arrays: the non-empty units of `ids`, in order."""
    ids = np.asarray(ids)
    newlines = separators.newlines[ids]
    candidate = (separators.line_end if unit in ("line", "paragraph") else separators.space)[ids]
    edges = np.diff(candidate.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    run_starts, run_ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if unit != "line" and len(run_starts):
        # a blank line, or line ends / whitespace at the very start or end of the text
        keep = ((np.add.reduceat(newlines, run_starts, dtype=np.int64) >= 2)
                | (run_starts == 0) | (run_ends == len(ids)))
        if unit == "sentence":
            keep |= separators.sentence_end[ids[np.maximum(run_starts - 1, 0)]]
        run_starts, run_ends = run_starts[keep], run_ends[keep]
    starts = np.concatenate([[0], run_ends]).astype(np.int64)
    ends = np.concatenate([run_starts, [len(ids)]]).astype(np.int64)
    nonempty = ends > starts
    return starts[nonempty], ends[nonempty]


@dataclass(frozen=True)
class Documents:
    """Some units of an id array, with the marker ids: what a document run trains on."""

    ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    start_id: int
    end_id: int

    def __len__(self) -> int:  # tokens in the units (0: no units)
        return int((self.ends - self.starts).sum())

    @property
    def units(self) -> int:
        return len(self.starts)

    def subset(self, part: slice) -> Documents:
        return Documents(self.ids, self.starts[part], self.ends[part], self.start_id, self.end_id)


def documents_of(ids: np.ndarray, tokenizer, unit: str) -> Documents:
    starts, ends = unit_bounds(ids, Separators.of(tokenizer), unit)
    return Documents(ids, starts, ends, tokenizer.start_id, tokenizer.end_id)


def split_run_ids(ids: np.ndarray, data, tokenizer):
    """(train, validation) parts of a run's ids: contiguous id ranges (data.split_ids), or for
    a document run its units, the last val_fraction of them held out."""
    from .data import split_ids
    from .framing import context_length

    if data.batching != "documents":
        return split_ids(ids, data.val_fraction, context_length(data))
    docs = documents_of(ids, tokenizer, data.document_unit)
    n_val = int(docs.units * data.val_fraction)
    if docs.units - n_val < 1:
        raise CorpusError(f"the corpus has no {data.document_unit} to train on; give more text "
                          "or another --document-unit")
    if data.val_fraction and n_val < 1:
        raise CorpusError(f"the validation part ({data.val_fraction:g} of {docs.units} "
                          f"{data.document_unit}s) holds no {data.document_unit}; give more text "
                          "or a larger --val-fraction")
    cut = docs.units - n_val
    lengths = docs.ends - docs.starts
    log.info("document mode: %s %ss (%s train, %s validation); %s tokens, the longest %s "
             "(%s longer than --seq-len %d, cut into pieces)", f"{docs.units:,}", data.document_unit,
             f"{cut:,}", f"{n_val:,}", f"{len(docs):,}", f"{lengths.max():,}",
             f"{int((lengths + 1 > data.seq_len).sum()):,}", data.seq_len)
    return docs.subset(slice(0, cut)), docs.subset(slice(cut, None))


# -- batches --------------------------------------------------------------------------------
def piece_plan(docs: Documents, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Every row of an epoch: (unit index, offset into the unit's S) of each piece."""
    pieces = -(-(docs.ends - docs.starts + 1) // seq_len)  # L + 1 inputs per unit
    units = np.repeat(np.arange(docs.units, dtype=np.int64), pieces)
    first_row = np.repeat(np.cumsum(pieces) - pieces, pieces)
    offsets = (np.arange(len(units), dtype=np.int64) - first_row) * seq_len
    return units, offsets


def gather_pieces(docs: Documents, units: np.ndarray, offsets: np.ndarray,
                  seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """-> inputs and targets (rows, width), right-padded; width is the longest row's."""
    lengths = (docs.ends - docs.starts)[units]
    span = np.minimum(seq_len, lengths + 1 - offsets)  # inputs (and targets) of each row
    width = int(span.max())
    positions = offsets[:, None] + np.arange(width + 1)  # positions in S = [start] t [end]
    at = np.clip(docs.starts[units][:, None] + positions - 1, 0, len(docs.ids) - 1)
    tokens = np.asarray(docs.ids[at], dtype=np.int64)
    tokens[positions == 0] = docs.start_id
    tokens[positions == lengths[:, None] + 1] = docs.end_id
    padding = np.arange(width)[None, :] >= span[:, None]
    inputs, targets = tokens[:, :-1].copy(), tokens[:, 1:].copy()
    inputs[padding], targets[padding] = docs.end_id, IGNORE
    import torch

    return torch.from_numpy(inputs), torch.from_numpy(targets)


class DocumentBatches:
    """The pieces of every unit, shuffled each epoch; a last partial batch is filled from
    the epoch's start."""

    def __init__(self, docs: Documents, batch_size: int, seq_len: int, seed: int):
        self.docs, self.batch_size, self.seq_len, self.seed = docs, batch_size, seq_len, seed
        self.units, self.offsets = piece_plan(docs, seq_len)
        if not len(self.units):
            raise CorpusError("the training part holds no unit; give more text")
        self.steps_per_epoch = -(-len(self.units) // batch_size)
        self._order_epoch, self._order = -1, np.empty(0, dtype=np.int64)

    def position(self, step: int) -> tuple[int, int]:
        return divmod(step, self.steps_per_epoch)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = self.position(step)
        if epoch != self._order_epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.units))
            self._order = np.resize(order, self.steps_per_epoch * self.batch_size)
            self._order_epoch = epoch
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        return gather_pieces(self.docs, self.units[rows], self.offsets[rows], self.seq_len)

    def starts_new_stream(self, step: int) -> bool:
        return True


# -- generation -----------------------------------------------------------------------------
def document_prompt_ids(tokenizer, prime: str | None, unknown: str) -> np.ndarray:
    """[start] + the prime's ids (no prime: [start] alone), int64."""
    from .tokenizer import encode_prompt

    ids = encode_prompt(tokenizer, prime, unknown) if prime else np.empty(0, dtype=np.int64)
    return np.concatenate([[tokenizer.start_id], ids]).astype(np.int64)


def document_prompt(tokenizer, prime: str | None, unknown: str) -> torch.Tensor:
    import torch

    return torch.from_numpy(document_prompt_ids(tokenizer, prime, unknown))


def end_rows(ids: list[int], ended: list[bool], end_id: int) -> tuple[list[int], list[bool]]:
    """One generation step of a document run: the ids with [end] kept where a sample had
    ended (it stays ended, decoded as nothing), and which samples have ended now."""
    ids = [end_id if done else token for done, token in zip(ended, ids)]
    return ids, [token == end_id for token in ids]
