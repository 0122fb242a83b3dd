"""Shared helpers for the benchmark scripts: timing by alternating rounds, tables, RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if "model name" in line)
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def alternate(contenders: dict[str, Callable[[], float]], rounds: int = 3) -> dict[str, float]:
    """Run each contender once per round, in turn, `rounds` times; the median of each.
    A contender returns its own figure (e.g. characters per second)."""
    figures: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            figures[name].append(run())
    return {name: statistics.median(values) for name, values in figures.items()}


def rate(work: float, run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return work / (time.perf_counter() - start)


def matmul_rate(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """The better of torch's matmul and oneDNN's (which the fused RNN kernels use; for
    float32 it is about twice torch's MKL path on this CPU)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a_dnn, b_dnn = a.to_mkldnn(), b.to_mkldnn()
    rates = []
    for product in (lambda: a @ b, lambda: torch._C._nn.mkldnn_linear(a_dnn, b_dnn)):
        product()
        start = time.perf_counter()
        for _ in range(repeats):
            product()
        rates.append(2 * n**3 * repeats / (time.perf_counter() - start))
    return max(rates)


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def record(title: str, text: str) -> None:
    """Print a section and replace the section of the same title in RESULTS.md."""
    command = "python " + " ".join([f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    stamp = datetime.date.today().isoformat()
    section = f"## {title}\n\n{stamp} on {machine()}\n\n`{command}`\n\n{text}\n"
    print(section)
    existing = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    parts = existing.split("\n## ")
    kept = [parts[0].rstrip("\n") + "\n"] + [
        "## " + p.rstrip("\n") + "\n" for p in parts[1:] if not p.startswith(title + "\n")]
    RESULTS.write_text("\n".join(kept + [section]), encoding="utf-8")


def parse_value(text: str):
    """A NAME=VALUE setting's value from the command line: int, float, true/false or text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)
