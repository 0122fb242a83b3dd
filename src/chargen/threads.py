"""How many CPU threads torch runs: as many as there are free cores, re-checked while training.

torch's OpenMP threads spin while they wait for the next parallel region. When another process
holds one of the cores, a spinning thread steals that core's time slices and every parallel
region waits for it: measured on a 2-core machine, a small LSTM fell from ~415k chars/s to
~130k with 2 threads beside one busy-loop process, while 1 thread kept ~415k; beside a second
2-thread training the collapse was 100x. A passive wait policy (OMP_WAIT_POLICY=PASSIVE)
softens the collapse but costs ~30% on a quiet machine (1x256 LSTM: ~74k -> ~50k chars/s), so
chargen keeps the spinning threads and runs no more of them than there are free cores.

The load of other processes is the busy time of all CPUs (/proc/stat) less this process's own
CPU time, over an interval. Where /proc/stat is missing (macOS, Windows) torch's own count
stays. A thread count set by the user (`--threads N`, or OMP_NUM_THREADS in the environment) is
never changed.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("chargen")

STAT = "/proc/stat"
FIRST_LOOK_SECONDS = 0.5  # the first look (corpus reading and set-up usually take longer)
RECHECK_SECONDS = 5.0  # later looks: at most this often
# Load below this share of a core is noise (a shell, a logger), not a neighbour.
NOISE_CORES = 0.2


@dataclass(frozen=True)
class CpuSample:
    wall: float  # seconds, monotonic
    busy: float  # CPU-seconds all cores spent outside idle and iowait since boot
    own: float  # CPU-seconds of this process (all its threads)


def read_sample(stat_path: str = STAT) -> CpuSample | None:
    """Now's totals, or None where the system has no /proc/stat."""
    try:
        with open(stat_path, encoding="ascii") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(value) for value in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    busy = (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # guest time is inside user
    return CpuSample(time.monotonic(), busy, time.process_time())


def others_busy(before: CpuSample, after: CpuSample) -> float:
    """Cores kept busy by other processes between two samples."""
    wall = after.wall - before.wall
    if wall <= 0:
        return 0.0
    others = (after.busy - before.busy) - (after.own - before.own)
    return max(0.0, others / wall)


def free_cores(others: float, cores: int) -> int:
    """Threads to run beside `others` busy cores: every core no neighbour uses, at least one."""
    taken = max(0, math.ceil(others - NOISE_CORES))
    return max(1, cores - taken)


def user_threads(setting: int) -> int | None:
    """The thread count the user fixed: --threads N, else OMP_NUM_THREADS; None for auto."""
    if setting:
        return setting
    fixed = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(fixed) if fixed.isdigit() and int(fixed) > 0 else None


class ThreadGovernor:
    """Sets torch's thread count from `setting` (0: auto) and, for auto, follows the load:
    call `check` now and then (the trainer does at its log points); it looks again once
    FIRST_LOOK_SECONDS have passed since construction, then every RECHECK_SECONDS."""

    def __init__(self, setting: int = 0, read: Callable[[], CpuSample | None] = read_sample,
                 cores: int | None = None, apply: Callable[[int], None] | None = None):
        self.read, self._apply = read, apply or _set_torch_threads
        fixed = user_threads(setting)
        self._last = self.read() if fixed is None else None
        self.auto = self._last is not None
        self.cores = cores or _torch_default_threads()
        self.threads = fixed or self.cores
        self._interval = FIRST_LOOK_SECONDS
        self._apply(self.threads)

    def check(self, now: float | None = None) -> int:
        """Re-read the load when the interval has passed -> the thread count now."""
        if not self.auto:
            return self.threads
        now = time.monotonic() if now is None else now
        if now - self._last.wall >= self._interval:
            self._follow(self.read())
        return self.threads

    def _follow(self, sample: CpuSample | None) -> None:
        if sample is None:
            return
        others = others_busy(self._last, sample)
        self._last, self._interval = sample, RECHECK_SECONDS
        wanted = free_cores(others, self.cores)
        if wanted != self.threads:
            log.info("threads: %d -> %d (other processes keep %.1f of %d cores busy; --threads N "
                     "fixes the count)", self.threads, wanted, others, self.cores)
            self.threads = wanted
            self._apply(wanted)


_DEFAULT_THREADS: list[int] = []


def _torch_default_threads() -> int:
    """torch's own count (the physical cores it may use) as first seen, before any change."""
    if not _DEFAULT_THREADS:
        import torch

        _DEFAULT_THREADS.append(torch.get_num_threads())
    return _DEFAULT_THREADS[0]


def _set_torch_threads(count: int) -> None:
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
