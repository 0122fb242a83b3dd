"""Text sources -> cleaned text: files, directories, built-in corpora; decode and clean.

Files are read in chunks, so a corpus of any size streams through in bounded memory
(`CorpusStream.chunks`); `load_corpus` joins the chunks for text that fits in memory.
"""

from __future__ import annotations

import codecs
import functools
import logging
import re
import stat
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .config import check_encoding
from .errors import CorpusError
from .gutenberg import MARKER_WINDOW, gutenberg_range, strip_gutenberg_boilerplate
from .resources import check_fits, format_bytes

log = logging.getLogger("chargen")

BUILTIN_PREFIX = "builtin:"
CHUNK_BYTES = 1 << 24
_SNIFF_BYTES = 8192
# Peak memory per byte of file when a whole text is held as one string: the chunks, the
# joined string (up to 4 bytes a character) and a cleaning copy.
_TEXT_BYTES_PER_BYTE = 6


@dataclass(frozen=True)
class Corpus:
    text: str
    sources: tuple[str, ...]
    name: str


def _python_docs() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name].strip("\n") for name in sorted(topics)) + "\n"


BUILTINS = {"python-docs": _python_docs}


@dataclass(frozen=True)
class CorpusStream:
    """Resolved sources and cleaning options; `chunks()` reads them afresh each call."""

    items: tuple[str | Path, ...]
    name: str
    encoding: str = "utf-8"
    normalize_newlines: bool = True
    strip_gutenberg: bool = True
    lowercase: bool = False
    strip_punctuation: bool = False

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(str(item) for item in self.items)

    @property
    def size_bytes(self) -> int:
        return sum(item.stat().st_size for item in self.items if isinstance(item, Path))

    def chunks(self) -> Iterator[str]:
        """Cleaned text pieces in order; sources are separated by a newline."""
        ends_with_newline = True
        for item in self.items:
            if not ends_with_newline:
                yield "\n"
            for piece in self._item_chunks(item):
                if piece:
                    ends_with_newline = piece.endswith("\n")
                    yield piece

    def _item_chunks(self, item: str | Path) -> Iterator[str]:
        if isinstance(item, str):
            text = BUILTINS[item[len(BUILTIN_PREFIX) :]]()
            yield clean_text(text, self.normalize_newlines, self.strip_gutenberg, self.lowercase,
                             self.strip_punctuation)
            return
        newline_fix = _NewlineNormaliser() if self.normalize_newlines else None
        for text in _decode_file(item, self.encoding, self.strip_gutenberg):
            if newline_fix:
                text = newline_fix(text)
            text = text.lower() if self.lowercase else text
            yield remove_punctuation(text) if self.strip_punctuation else text
        if newline_fix:
            yield newline_fix.flush()


def open_corpus(paths: list[str] | str, encoding: str = "utf-8", normalize_newlines: bool = True,
                strip_gutenberg: bool = True, lowercase: bool = False,
                strip_punctuation: bool = False) -> CorpusStream:
    """Resolve the sources (files, directories' text files sorted, builtin:NAME) without
    reading them."""
    if isinstance(paths, (str, Path)):
        paths = [str(paths)]
    if not paths:
        raise CorpusError("no corpus given: name a text file, a directory or builtin:python-docs")
    check_encoding(encoding)
    items = tuple(item for source in paths for item in _resolve(str(source), encoding))
    return CorpusStream(items, corpus_name(str(paths[0])), encoding, normalize_newlines,
                        strip_gutenberg, lowercase, strip_punctuation)


def load_corpus(paths: list[str] | str, encoding: str = "utf-8", normalize_newlines: bool = True,
                strip_gutenberg: bool = True, lowercase: bool = False,
                strip_punctuation: bool = False) -> Corpus:
    """Read, decode and clean every source into one string."""
    stream = open_corpus(paths, encoding, normalize_newlines, strip_gutenberg, lowercase,
                         strip_punctuation)
    check_fits(_TEXT_BYTES_PER_BYTE * stream.size_bytes,
               f"holding {format_bytes(stream.size_bytes)} of text in memory",
               "use a smaller file, or raise CHARGEN_MAX_MEMORY if the estimate is wrong")
    text = "".join(stream.chunks())
    if not text.strip():
        raise empty_corpus(stream)
    return Corpus(text=text, sources=stream.sources, name=stream.name)


def empty_corpus(stream: CorpusStream) -> CorpusError:
    return CorpusError(f"the corpus is empty: {', '.join(stream.sources)} holds no text; "
                       "give a file with some")


def corpus_name(source: str) -> str:
    if source.startswith(BUILTIN_PREFIX):
        return source[len(BUILTIN_PREFIX) :]
    path = Path(source)
    return (path.stem if path.is_file() else path.name) or "corpus"


def clean_text(text: str, normalize_newlines=True, strip_gutenberg=True, lowercase=False,
               strip_punctuation=False) -> str:
    if normalize_newlines:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if strip_gutenberg:
        text = strip_gutenberg_boilerplate(text)
    if lowercase:
        text = text.lower()
    if strip_punctuation:
        text = remove_punctuation(text)
    return text


@functools.cache
def _punctuation_table() -> dict[int, None]:
    """code point -> None for every punctuation character (built once, ~0.7 s)."""
    return dict.fromkeys(p for p in range(sys.maxunicode + 1)
                         if unicodedata.category(chr(p)).startswith("P"))


def remove_punctuation(text: str) -> str:
    """Drop Unicode punctuation (categories Pc Pd Ps Pe Pi Pf Po: . , ; ! ? ' " - ( ) 。 「 」 _ and
    the like); letters, digits, symbols ($ + =) and whitespace stay."""
    return text.translate(_punctuation_table())


class _NewlineNormaliser:
    """CRLF and CR -> LF across chunk boundaries (a CR at a chunk's end waits for the next)."""

    def __init__(self):
        self.pending_cr = False

    def __call__(self, text: str) -> str:
        if self.pending_cr:
            text = "\r" + text
        self.pending_cr = text.endswith("\r")
        if self.pending_cr:
            text = text[:-1]
        return text.replace("\r\n", "\n").replace("\r", "\n")

    def flush(self) -> str:
        return "\n" if self.pending_cr else ""


def _ascii_compatible(encoding: str) -> bool:
    return codecs.lookup(encoding).name not in ("utf-16", "utf-16-le", "utf-16-be", "utf-32",
                                                "utf-32-le", "utf-32-be")


def _byte_range(path: Path, encoding: str, strip_gutenberg: bool) -> tuple[int, int, bool]:
    size = path.stat().st_size
    if not strip_gutenberg or not _ascii_compatible(encoding):
        return 0, size, False
    with open(path, "rb") as handle:
        head = handle.read(MARKER_WINDOW)
        if size <= 2 * MARKER_WINDOW:
            whole = head + handle.read()
            return gutenberg_range(whole, whole)
        handle.seek(size - MARKER_WINDOW)
        return gutenberg_range(head, handle.read(), size)


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# Control characters other than tab, newline, carriage return, vertical tab and form feed.
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f]")


def _decode_file(path: Path, encoding: str, strip_gutenberg: bool) -> Iterator[str]:
    start, end, footer = _byte_range(path, encoding, strip_gutenberg)
    codec = _bom_encoding(path, encoding) if start == 0 else encoding
    decoder = codecs.getincrementaldecoder(codec)("strict")
    controls = _ControlWatch(path)
    with open(path, "rb") as handle:
        handle.seek(start)
        offset = start
        while offset < end:
            data = handle.read(min(CHUNK_BYTES, end - offset))
            if not data:
                break
            buffered = len(decoder.getstate()[0])
            try:
                text = decoder.decode(data, final=offset + len(data) >= end)
            except UnicodeError as err:
                at = offset - buffered + getattr(err, "start", 0)
                raise CorpusError(
                    f"{path}: not valid {encoding} at byte {at:,}; pass --encoding with the "
                    "file's real encoding (e.g. --encoding latin-1)") from None
            yield controls.check(text)
            offset += len(data)
    controls.report()
    if footer:
        yield "\n"


def _bom_encoding(path: Path, encoding: str) -> str:
    """A UTF-8 byte-order mark is dropped (it is not text); a UTF-16/32 one under a UTF-8
    --encoding is named with the flag to pass, rather than read as binary."""
    if codecs.lookup(encoding).name != "utf-8":
        return encoding
    with open(path, "rb") as handle:
        head = handle.read(4)
    for bom, family in _BOMS:
        if head.startswith(bom):
            raise CorpusError(f"{path}: is {family.upper()} text (it starts with a {family.upper()}"
                              f" byte-order mark); pass --encoding {family}")
    return "utf-8-sig"


class _ControlWatch:
    """Counts control characters as the text streams by: a NUL stops the read (binary data,
    or text in another encoding); the others are reported once, with where the first is."""

    def __init__(self, where: str | Path):
        self.where, self.seen, self.first, self.count = where, 0, None, 0

    def check(self, text: str) -> str:
        for found in _CONTROL.finditer(text):
            at = self.seen + found.start()
            if found.group() == "\x00":
                raise CorpusError(
                    f"{self.where}: a NUL character at character {at:,}: binary data, not text; "
                    "give a text file (UTF-16 or UTF-32 text: pass --encoding utf-16 or utf-32)")
            self.count += 1
            self.first = at if self.first is None else self.first
        self.seen += len(text)
        return text

    def report(self) -> None:
        if self.count:
            log.warning("%s: %d control character(s), the first at character %s; they are "
                        "trained on as they are", self.where, self.count, f"{self.first:,}")


def _resolve(source: str, encoding: str) -> list[str | Path]:
    """A source -> the builtin names and files it stands for (directories expanded)."""
    if source.startswith(BUILTIN_PREFIX):
        if source[len(BUILTIN_PREFIX) :] not in BUILTINS:
            raise CorpusError(f"unknown built-in corpus {source!r}; choose from: "
                              + ", ".join(BUILTIN_PREFIX + k for k in BUILTINS))
        return [source]
    path = Path(source)
    if not path.exists():
        raise CorpusError(f"{source}: no such file or directory")
    if path.is_dir():
        files = _text_files(path)
        if not files:
            raise CorpusError(f"{source}: the directory holds no text files")
        return files
    if not stat.S_ISREG(path.stat().st_mode):
        raise CorpusError(f"{source}: not a regular file (a FIFO or device?); give a text file")
    return [path]


def _text_files(directory: Path) -> list[Path]:
    found = []
    for path in sorted(directory.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(directory).parts):
            continue
        if path.is_file() and stat.S_ISREG(path.stat().st_mode):
            with open(path, "rb") as handle:
                if not _looks_binary(handle.read(_SNIFF_BYTES)):
                    found.append(path)
    return found


def _looks_binary(data: bytes) -> bool:
    return b"\x00" in data[:_SNIFF_BYTES]
