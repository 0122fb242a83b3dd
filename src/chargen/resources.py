"""Memory planning: estimate before allocating, refuse with the estimate. No torch import."""

from __future__ import annotations

import os

from .config import parse_size
from .errors import ResourceError


def available_memory(device=None) -> int | None:
    """Bytes chargen may plan to use: the GPU's free memory on CUDA; otherwise the least of
    MemAvailable, the cgroup limit and CHARGEN_MAX_MEMORY (a cap users can set). None if
    nothing is known."""
    if device is not None and device.type == "cuda":
        import torch

        return torch.cuda.mem_get_info(device)[0]
    limits = [_meminfo_available(), _cgroup_limit(), _env_limit()]
    known = [limit for limit in limits if limit]
    return min(known) if known else None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cgroup_limit() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as handle:
            value = handle.read().strip()
        return None if value == "max" else int(value)
    except (OSError, ValueError):
        return None


def _env_limit() -> int | None:
    value = os.environ.get("CHARGEN_MAX_MEMORY")
    return parse_size(value, "CHARGEN_MAX_MEMORY") if value else None


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


def check_fits(needed: int, what: str, fix: str, device=None) -> None:
    """Refuse, before allocating, work whose estimated memory exceeds what is available."""
    available = available_memory(device)
    if available is not None and needed > available:
        raise ResourceError(f"{what} would need about {format_bytes(needed)} of memory, more than "
                            f"the {format_bytes(available)} available; {fix}")
