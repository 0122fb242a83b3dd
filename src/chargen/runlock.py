"""One writer per run: training holds an advisory lock on RUN/.lock for its whole life.

fcntl.flock rather than the filelock package: filelock truncates the lock file when it opens
it, so the holder's PID could not be kept in the file for the second writer's message, and
flock is what filelock uses on POSIX anyway. The kernel drops the lock when its holder dies
(SIGKILL, power loss of the process), so a stale lock is simply taken over: there is no
"stale" state to detect. Windows has no fcntl; there the run is not locked.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .errors import RunBusy

LOCK = ".lock"


class RunLock:
    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / LOCK
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            return self
        try:
            import fcntl
        except ImportError:  # Windows
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunBusy(f"{self.path.parent} is being written by another chargen process (PID "
                          f"{holder}); wait for it to finish or stop it, then resume") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
