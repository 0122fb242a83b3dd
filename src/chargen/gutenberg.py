"""Project Gutenberg's licence header and footer: the byte range of the book between them."""

from __future__ import annotations

import re

# Gutenberg markers are looked for in this much of the head and of the tail of a file.
MARKER_WINDOW = 1 << 20
_GUTENBERG_START = re.compile(rb"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG[^\n]*\n?",
                              re.M | re.I)
_GUTENBERG_END = re.compile(
    rb"^(\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project Gutenberg)", re.M | re.I)


def strip_gutenberg_boilerplate(text: str) -> str:
    """Keep what lies between the Project Gutenberg START and END markers, when present."""
    data = text.encode("utf-8", "surrogatepass")
    start, end, footer = gutenberg_range(data, data)
    return data[start:end].decode("utf-8", "surrogatepass") + ("\n" if footer else "")


def gutenberg_range(head: bytes, tail: bytes, size: int | None = None) -> tuple[int, int, bool]:
    """Byte range of the text between the markers, given the file's first and last bytes
    (head and tail may be the same whole file). -> (start, end, whether a footer was cut)."""
    size = len(tail) if size is None else size
    start = 0
    found = _GUTENBERG_START.search(head)
    if found:
        start = found.end()
        while start < len(head) and head[start : start + 1] in (b"\r", b"\n"):
            start += 1
    tail_offset = size - len(tail)
    for match in _GUTENBERG_END.finditer(tail):
        if tail_offset + match.start() >= start:
            end = tail_offset + len(tail[: match.start()].rstrip())
            return start, max(end, start), True
    return start, size, False
