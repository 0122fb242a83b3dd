"""Text sources -> one cleaned string: files, directories, built-in corpora; decode and clean."""

from __future__ import annotations

import codecs
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, CorpusError
from .resources import check_fits, format_bytes

BUILTIN_PREFIX = "builtin:"
_SNIFF_BYTES = 8192
# Peak memory while loading, per byte of text: the bytes, the decoded string, cleaning
# copies and the token ids.
_LOAD_BYTES_PER_BYTE = 5
_GUTENBERG_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
_GUTENBERG_END = re.compile(
    r"^(\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project Gutenberg).*$", re.M | re.I
)


@dataclass(frozen=True)
class Corpus:
    text: str
    sources: tuple[str, ...]
    name: str

    def summary(self) -> str:
        return f"{len(self.text):,} characters, {len(set(self.text)):,} distinct"


def _python_docs() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name].strip("\n") for name in sorted(topics)) + "\n"


BUILTINS = {"python-docs": _python_docs}


def load_corpus(
    paths: list[str] | str,
    encoding: str = "utf-8",
    normalize_newlines: bool = True,
    strip_gutenberg: bool = True,
    lowercase: bool = False,
) -> Corpus:
    """Read, decode and clean every source; directories contribute their text files, sorted."""
    if isinstance(paths, (str, Path)):
        paths = [str(paths)]
    if not paths:
        raise CorpusError("no corpus given: name a text file, a directory or builtin:python-docs")
    _check_encoding(encoding)
    pieces, sources = [], []
    for name, text in _read_sources([str(p) for p in paths], encoding):
        pieces.append(clean_text(text, normalize_newlines, strip_gutenberg, lowercase))
        sources.append(name)
    text = "".join(_join_with_newline(pieces))
    if not text.strip():
        raise CorpusError(f"the corpus is empty: {', '.join(sources)} holds no text to train on")
    return Corpus(text=text, sources=tuple(sources), name=corpus_name(paths[0]))


def corpus_name(source: str) -> str:
    if source.startswith(BUILTIN_PREFIX):
        return source[len(BUILTIN_PREFIX) :]
    path = Path(source)
    return (path.stem if path.is_file() else path.name) or "corpus"


def clean_text(text: str, normalize_newlines=True, strip_gutenberg=True, lowercase=False) -> str:
    if normalize_newlines:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if strip_gutenberg:
        text = strip_gutenberg_boilerplate(text)
    if lowercase:
        text = text.lower()
    return text


def strip_gutenberg_boilerplate(text: str) -> str:
    """Keep what lies between the Project Gutenberg START and END markers, when present."""
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end() :].lstrip("\r\n")
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()].rstrip() + "\n"
    return text


def _join_with_newline(pieces):
    for i, piece in enumerate(pieces):
        yield piece
        if i < len(pieces) - 1 and piece and not piece.endswith("\n"):
            yield "\n"


def _check_encoding(encoding: str) -> None:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"unknown --encoding {encoding!r}; try utf-8 or latin-1") from None


def _resolve(source: str) -> list[str | Path]:
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


def _read_sources(paths: list[str], encoding: str):
    items = [item for source in paths for item in _resolve(str(source))]
    total = sum(item.stat().st_size for item in items if isinstance(item, Path))
    check_fits(_LOAD_BYTES_PER_BYTE * total, f"loading {format_bytes(total)} of text",
               "train on part of the text, or raise CHARGEN_MAX_MEMORY if the estimate is wrong")
    for item in items:
        if isinstance(item, str):
            yield item, BUILTINS[item[len(BUILTIN_PREFIX) :]]()
            continue
        data = item.read_bytes()
        if _looks_binary(data) and not encoding.lower().replace("-", "").startswith("utf16"):
            raise CorpusError(f"{item}: looks like a binary file, not text; give a text file")
        yield str(item), _decode(item, data, encoding)


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


def _decode(path: Path, data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        raise CorpusError(
            f"{path}: not valid {encoding} at byte {err.start}; "
            "pass --encoding with the file's real encoding (e.g. --encoding latin-1)"
        ) from None
