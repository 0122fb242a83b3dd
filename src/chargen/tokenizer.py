"""Text <-> token ids. Char level (sorted distinct characters + an unknown id), byte level, or
word level (words.py).

Encoding is vectorised with numpy: code points are looked up with searchsorted, never
one character at a time in Python.
"""

from __future__ import annotations

import codecs
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError, TokenizerError
from .words import UNKNOWN, WordTokenizer, choose_vocabulary, narrowest_dtype, split_stream

_ENCODE_CHUNK = 1 << 22  # characters encoded at a time




def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


class CharTokenizer:
    """Id 0 is the unknown token; ids 1..n are the distinct characters in code-point order."""

    kind = "char"
    unit = "character"
    unknown_id = 0

    def __init__(self, chars: list[str]):
        if any(len(c) != 1 for c in chars):
            raise TokenizerError("a character tokenizer holds single characters only")
        self.chars = sorted(set(chars))
        points = np.array([ord(c) for c in self.chars], dtype=np.int64)
        # code point -> id; the slot past the largest known point catches every unknown one.
        self._lookup = np.zeros(int(points.max(initial=-1)) + 2,
                                dtype=narrowest_dtype(len(self.chars) + 1))
        self._lookup[points] = np.arange(1, len(points) + 1)
        self._table = np.array([UNKNOWN, *self.chars], dtype=object)

    @classmethod
    def fit(cls, text: str) -> CharTokenizer:
        return cls(seen_characters([text]))

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    @property
    def never_sample(self) -> list[int]:
        return [self.unknown_id]

    def encode(self, text: str) -> np.ndarray:
        ids = np.empty(len(text), dtype=self._lookup.dtype)
        for start in range(0, len(text), _ENCODE_CHUNK):  # bounds the temporaries' memory
            points = _code_points(text[start : start + _ENCODE_CHUNK])
            ids[start : start + len(points)] = self._lookup[
                np.minimum(points, len(self._lookup) - 1)]
        return ids

    def encode_chunks(self, chunks):
        return (self.encode(chunk) for chunk in chunks)

    def unknown_chars(self, text: str) -> list[str]:
        ids = self.encode(text)
        return sorted({text[i] for i in np.flatnonzero(ids == self.unknown_id).tolist()})

    def decode(self, ids) -> str:
        return "".join(self._table[np.asarray(ids, dtype=np.int64)].tolist())

    def stream_decoder(self):
        return self.decode

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "unknown": UNKNOWN, "chars": "".join(self.chars)}


class ByteTokenizer:
    """The UTF-8 bytes of the text: 256 ids, nothing is ever unknown."""

    kind = "byte"
    unit = "character"
    vocab_size = 256
    unknown_id = -1
    never_sample: list[int] = []

    @classmethod
    def fit(cls, text: str) -> ByteTokenizer:
        return cls()

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8).copy()

    def encode_chunks(self, chunks):
        return (self.encode(chunk) for chunk in chunks)

    def unknown_chars(self, text: str) -> list[str]:
        return []

    def decode(self, ids) -> str:
        return bytes(np.asarray(ids, dtype=np.uint8).tolist()).decode("utf-8", "replace")

    def stream_decoder(self):
        """A decoder for ids arriving piece by piece: holds back incomplete UTF-8 sequences."""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        return lambda ids: decoder.decode(bytes(np.asarray(ids, dtype=np.uint8).tolist()))

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind}


Tokenizer = CharTokenizer | ByteTokenizer | WordTokenizer


def seen_characters(chunks) -> list[str]:
    """The distinct characters of a stream of text pieces, in code-point order."""
    seen = np.zeros(0x110000, dtype=bool)
    for chunk in chunks:
        for start in range(0, len(chunk), _ENCODE_CHUNK):
            seen[_code_points(chunk[start : start + _ENCODE_CHUNK])] = True
    return [chr(p) for p in np.flatnonzero(seen).tolist()]


@dataclass(frozen=True)
class TextStats:
    characters: int
    tokens: int
    distinct: int
    has_text: bool  # anything but whitespace


def scan(kind: str, chunks, min_count: int = 1, max_vocab: int = 0) -> tuple[Tokenizer, TextStats]:
    """One pass over the text: fit the tokenizer and count what the split and summary need.
    min_count and max_vocab bound a word vocabulary (see words.choose_vocabulary)."""
    counts = {"characters": 0, "tokens": 0, "has_text": False}
    if kind == "word":
        return _scan_words(chunks, min_count, max_vocab)

    def counted():
        for chunk in chunks:
            counts["characters"] += len(chunk)
            if kind == "byte":
                counts["tokens"] += len(chunk.encode("utf-8", "surrogatepass"))
            counts["has_text"] = counts["has_text"] or not chunk.isspace()
            yield chunk

    chars = seen_characters(counted())
    tokenizer = CharTokenizer(chars) if kind == "char" else ByteTokenizer()
    if kind == "char":
        counts["tokens"] = counts["characters"]
    return tokenizer, TextStats(distinct=len(chars), **counts)


def encode_prompt(tokenizer: Tokenizer, prime: str, unknown: str = "error") -> np.ndarray:
    """Prompt -> ids. Characters the model never saw: 'error' (list them), 'replace' (the
    unknown id) or 'skip' (drop them)."""
    if prime == "":
        raise ConfigError("the prompt is empty: give some text with --prime, or leave --prime "
                          "out to start from a random slice of the training text")
    ids = tokenizer.encode(prime)
    missing = tokenizer.unknown_chars(prime)
    unit = tokenizer.unit  # character, or word for a word-level run
    if missing and unknown == "error":
        shown = " ".join(repr(c) for c in missing[:20])
        raise TokenizerError(f"the prompt has {unit}s this model never saw: {shown}; "
                             "remove them, or pass --unknown skip or --unknown replace")
    if missing and unknown == "skip":
        ids = ids[ids != tokenizer.unknown_id]
        if not len(ids):
            raise TokenizerError(f"the prompt has no {unit} this model knows; give "
                                 "another --prime")
    return ids
def _scan_words(chunks, min_count: int, max_vocab: int) -> tuple[Tokenizer, TextStats]:
    seen = np.zeros(0x110000, dtype=bool)
    totals = {"characters": 0, "has_text": False}

    def noted():
        for chunk in chunks:
            totals["characters"] += len(chunk)
            totals["has_text"] = totals["has_text"] or not chunk.isspace()
            for start in range(0, len(chunk), _ENCODE_CHUNK):
                seen[_code_points(chunk[start : start + _ENCODE_CHUNK])] = True
            yield chunk

    counts: Counter = Counter()
    for tokens in split_stream(noted()):
        counts.update(tokens)
    tokenizer = WordTokenizer(choose_vocabulary(counts, min_count, max_vocab))
    return tokenizer, TextStats(distinct=int(seen.sum()), tokens=sum(counts.values()), **totals)


def tokenizer_from_dict(raw: dict[str, Any]) -> Tokenizer:
    """A char, byte or word tokenizer (a document run's, with markers: documents.load_tokenizer)."""
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "word":
        return WordTokenizer.from_dict(raw)
    if kind == "char" and isinstance(raw.get("chars"), str):
        return CharTokenizer(list(raw["chars"]))
    if kind == "byte":
        return ByteTokenizer()
    raise TokenizerError("tokenizer.json is malformed: expected type 'char' with chars, 'word' with "
                         "words, or 'byte'")


def save_tokenizer_json(tokenizer: Tokenizer) -> str:
    return json.dumps(tokenizer.to_dict(), ensure_ascii=False)
