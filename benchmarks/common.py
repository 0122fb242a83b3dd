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


EMULATION = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")


def cpu_flags() -> tuple[str, set[str]]:
    """The CPU's model name with its family and model numbers (one name covers several AMD
    EPYC generations) and its flags (Linux; elsewhere the platform's name and no flags)."""
    name, flags = platform.processor() or platform.machine(), set()
    numbers = {}
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() in ("cpu family", "model"):
                    numbers[key.strip()] = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    if numbers:
        name += f" family {numbers.get('cpu family', '?')} model {numbers.get('model', '?')}"
    return name, flags


def native_bf16() -> bool:
    """bf16 matmuls run natively here (and are not switched off by an AVX2 emulation)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def machine() -> str:
    """The CPU, whether it has avx512_bf16 and AMX, any ISA emulation in force, threads."""
    name, flags = cpu_flags()
    has = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}"
                    for flag in ("avx512_bf16", "amx_bf16"))
    emulated = " ".join(f"{key}={os.environ[key]}" for key in EMULATION if key in os.environ)
    return (f"{name} ({has}{'; emulated: ' + emulated if emulated else ''}), "
            f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads")


def peak_rate() -> tuple[str, float]:
    """The precision chargen's `auto` computes in on this CPU and its matmul rate: bf16 where
    it is native, else fp32 (emulated bf16 is ~75x slower than fp32: never a baseline)."""
    dtype = torch.bfloat16 if native_bf16() else torch.float32
    return ("bf16" if dtype == torch.bfloat16 else "fp32"), matmul_rate(dtype)


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


def gpu_matmul_rate(dtype: torch.dtype, n: int = 8192, repeats: int = 10) -> float:
    """FLOP/s of an n^3 matmul on the current CUDA device (after warm-ups, synchronised)."""
    a = torch.randn(n, n, dtype=dtype, device="cuda")
    b = torch.randn(n, n, dtype=dtype, device="cuda")
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def record(title: str, text: str) -> None:
    """Print a section and put it in RESULTS.md, replacing the section of the same title
    measured on the same machine (another machine's figures stay beside it)."""
    command = "python " + " ".join([f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    stamp, where = datetime.date.today().isoformat(), machine()
    section = f"## {title}\n\n{stamp} on {where}\n\n`{command}`\n\n{text}\n"
    print(section)
    existing = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    parts = existing.split("\n## ")
    kept = [parts[0].rstrip("\n") + "\n"] + [
        "## " + p.rstrip("\n") + "\n" for p in parts[1:] if not _same_section(p, title, where)]
    RESULTS.write_text("\n".join(kept + [section]), encoding="utf-8")


def _same_section(part: str, title: str, where: str) -> bool:
    """Whether a RESULTS.md section (its text after '## ') is `title` measured on `where`."""
    lines = part.split("\n")
    return lines[0] == title and len(lines) > 2 and lines[2].partition(" on ")[2] == where


def parse_value(text: str):
    """A NAME=VALUE setting's value from the command line: int, float, true/false or text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)
