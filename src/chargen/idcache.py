"""Reuse the token ids of an earlier run on the same, unchanged corpus: a new run whose
sources (resolved paths, sizes, modification times), cleaning and tokenizer settings match a
sibling run's links that run's ids.npy instead of reading and tokenizing the text again."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .checkpoint import IDS, RunDir
from .config import DataConfig
from .corpus import CorpusStream
from .errors import ChargenError
from .files import CONFIG, TOKENIZER, read_json


def fingerprint(stream, data: DataConfig) -> dict[str, Any] | None:
    """What must be equal for two runs to share token ids; None for text given in memory."""
    if not isinstance(stream, CorpusStream):
        return None
    items = []
    for item in stream.items:
        if isinstance(item, Path):
            info = item.stat()
            items.append([str(item.resolve()), info.st_size, info.st_mtime_ns])
        else:
            items.append([item, sys.version])  # built-in text comes with the Python version
    return {"items": items, "encoding": stream.encoding,
            "normalize_newlines": stream.normalize_newlines,
            "strip_gutenberg": stream.strip_gutenberg, "lowercase": stream.lowercase,
            "strip_punctuation": stream.strip_punctuation, "tokenizer": data.tokenizer,
            "min_count": data.min_count, "max_vocab": data.max_vocab}


def find_run_with(print_: dict[str, Any] | None, parent: Path) -> RunDir | None:
    """A run directory in `parent` whose corpus has this fingerprint, if any."""
    if print_ is None or not parent.is_dir():
        return None
    for candidate in sorted(parent.iterdir()):
        if not (candidate / CONFIG).is_file() or not (candidate / IDS).is_file() \
                or not (candidate / TOKENIZER).is_file():
            continue
        try:
            meta = read_json(candidate / CONFIG)
        except ChargenError:
            continue
        corpus = meta.get("corpus", {}) if isinstance(meta, dict) else {}
        if corpus.get("fingerprint") == print_ and "init_from" not in corpus:
            return RunDir(candidate)
    return None
