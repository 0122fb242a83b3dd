"""Word-level tokens: words, single punctuation marks and whitespace runs.

A word is a run of letters and digits, with apostrophes allowed inside it (don't, l'homme).
Chinese, Japanese kana and the other CJK scripts write no spaces between words, so each of
their characters is a token of its own. Whitespace runs (" ", "\\n\\n", "\\t ") are tokens too,
and case is kept, so generated text has its spacing, line breaks and capitals, and decoding
is concatenation: decode(encode(t)) == t whenever every token of t is in the vocabulary.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .errors import TokenizerError

UNKNOWN = "[UNK]"
_CJK = ("\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
        "\uf900-\ufaff\U00020000-\U0003ffff")
_LETTERS = rf"[^\W_{_CJK}]+"  # letters and digits, not underscore, not CJK
_TOKEN = re.compile(rf"{_LETTERS}(?:['\u2019]{_LETTERS})*|\s+|.", re.DOTALL)


def split_words(text: str) -> list[str]:
    return _TOKEN.findall(text)


def split_stream(chunks: Iterable[str]) -> Iterator[list[str]]:
    """The tokens of a text given in pieces, one list per piece, as if it were one string.
    No token crosses a whitespace -> non-whitespace boundary, so the tokens up to the last
    such boundary are settled; the rest waits for the next piece (it may continue there)."""
    carried = ""
    for chunk in chunks:
        tokens = split_words(carried + chunk)
        cut = len(tokens) - 1
        while cut >= 0 and not tokens[cut][0].isspace():
            cut -= 1
        if cut == len(tokens) - 1:  # ends in whitespace: the run may go on
            cut -= 1
            while cut >= 0 and not tokens[cut][0].isspace():
                cut -= 1
        carried = "".join(tokens[cut + 1 :])
        yield tokens[: cut + 1]
    if carried:
        yield split_words(carried)


def choose_vocabulary(counts: Counter, min_count: int = 1, max_vocab: int = 0) -> list[str]:
    """The tokens seen at least min_count times, most frequent first (ties by text), at most
    max_vocab of them (0: no limit)."""
    kept = sorted((t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
    return kept[:max_vocab] if max_vocab else kept


class WordTokenizer:
    """Id 0 is the unknown token; ids 1..n are the vocabulary in its stored order."""

    kind = "word"
    unit = "word"
    unknown_id = 0

    def __init__(self, words: list[str]):
        if len(set(words)) != len(words) or UNKNOWN in words or "" in words:
            raise TokenizerError("a word vocabulary holds distinct, non-empty tokens")
        self.words = list(words)
        self._ids = {word: i for i, word in enumerate(self.words, start=1)}
        self._table = np.array([UNKNOWN, *self.words], dtype=object)
        self.dtype = narrowest_dtype(self.vocab_size)

    @classmethod
    def fit(cls, text: str, min_count: int = 1, max_vocab: int = 0) -> WordTokenizer:
        return cls(choose_vocabulary(Counter(split_words(text)), min_count, max_vocab))

    @property
    def vocab_size(self) -> int:
        return len(self.words) + 1

    @property
    def never_sample(self) -> list[int]:
        return [self.unknown_id]

    def _ids_of(self, tokens: list[str]) -> np.ndarray:
        lookup = self._ids.get
        return np.fromiter((lookup(t, 0) for t in tokens), dtype=self.dtype, count=len(tokens))

    def encode(self, text: str) -> np.ndarray:
        return self._ids_of(split_words(text))

    def encode_chunks(self, chunks: Iterable[str]) -> Iterator[np.ndarray]:
        for tokens in split_stream(chunks):
            yield self._ids_of(tokens)

    def unknown_chars(self, text: str) -> list[str]:
        """The prompt's tokens outside the vocabulary (named so for the char tokenizer's
        callers: here they are words)."""
        return sorted({t for t in split_words(text) if t not in self._ids})

    def decode(self, ids) -> str:
        return "".join(self._table[np.asarray(ids, dtype=np.int64)].tolist())

    def stream_decoder(self):
        return self.decode

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "unknown": UNKNOWN, "words": self.words}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> WordTokenizer:
        words = raw.get("words")
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise TokenizerError("tokenizer.json is malformed: a word tokenizer needs a list of words")
        return cls(words)


def narrowest_dtype(vocab_size: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    raise TokenizerError(f"vocabulary of {vocab_size} ids is too large")
