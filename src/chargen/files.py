"""Run and export files on disk, without torch: atomic writes, and reads bounded by what a
file of its kind can hold (the ONNX sampler, which must not import torch, reads through here
too).

Every file is written atomically (temporary file, fsync, os.replace), so a reader never sees
half a file; no file is read before it is known to be a regular file of a sensible size.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from .errors import ChargenError, CheckpointError

CONFIG, TOKENIZER = "config.json", "tokenizer.json"


def atomic_write(path: Path, data: bytes) -> None:
    with atomic_file(path) as handle:
        handle.write(data)


@contextlib.contextmanager
def atomic_file(path: Path):
    """A binary file handle whose content replaces `path` only once fully written and
    synced; on any failure the previous file stays and the temporary one is removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise ChargenError(f"could not write {path}: {err.strerror}; the previous file is "
                               "intact (free some disk space and resume)") from None
        raise
    _fsync_dir(path.parent)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


# The most a run's JSON file can hold: config.json is a few KB; a tokenizer of ten million
# words is about 200 MB. A larger (or endless) file is damaged or hostile and is not read.
JSON_LIMITS = {CONFIG: 1 << 20, TOKENIZER: 256 << 20}
JSONL_LIMIT = 1 << 30  # metrics.jsonl: about 5 million records
HEADER_LIMIT = 100_000_000  # the safetensors format's own ceiling on a header


def check_size(path: Path, limit: int, what: str = "a file of this run") -> int:
    """The size of `path`, refused unless it is a regular file of at most `limit` bytes: a
    run file is never read before this (a symlink to /dev/zero must not fill the memory)."""
    info = os.stat(path)  # follows symlinks: the target is what would be read
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"{path} is not a regular file (a device, FIFO or directory?); "
                              "restore the run's file, or retrain")
    if info.st_size > limit:
        raise CheckpointError(f"{path} holds {info.st_size:,} bytes, more than the {limit:,} that "
                              f"{what} can; it is damaged or not this run's: restore it or retrain")
    return info.st_size


def read_json(path: Path, limit: int | None = None, kind: str = "run directory",
              remedy: str = "restore it or retrain") -> Any:
    """The JSON in `path` (a file of a chargen `kind`), read only if its size is sensible."""
    path = Path(path)
    try:
        check_size(path, limit or JSON_LIMITS.get(path.name, 1 << 20))
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; is this a chargen {kind}?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); {remedy}") from None


def holds_something(path: Path) -> bool:
    """A file, or a directory that is not empty: an --out that must not be written over."""
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def check_creatable(path: Path) -> None:
    """Whether a directory can be made at `path`: tried for real in its nearest existing
    ancestor (permissions alone say nothing to root, or of a read-only file system)."""
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    try:
        if not ancestor.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        os.rmdir(tempfile.mkdtemp(prefix=".chargen-", dir=ancestor))
    except OSError as err:
        raise CheckpointError(f"cannot create {path}: {ancestor}: {err.strerror}; choose another "
                              "--out") from None


def plain_name(name: Any, why: str) -> str:
    """A file name with no directory part (nothing may point outside its directory)."""
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise CheckpointError(f"refusing the file name {name!r}: {why}")
    return name
