"""Memory and scale: a 1 GB corpus (lines of a real corpus, repeated and shuffled) against a
1 MB one: tokenisation speed, peak RSS while training, and step time.

    python benchmarks/scale.py [--size-mb 1024] [--steps 40] [--workdir /tmp/chargen-scale]

Each training runs in its own process so that its peak RSS (ru_maxrss) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import native_bf16, record, table

from chargen.checkpoint import RunDir
from chargen.corpus import open_corpus
from chargen.tokenizer import narrowest_dtype, scan

SOURCE = Path(os.environ.get("CHARGEN_CORPORA", Path(__file__).resolve().parents[2] / "shared"
                             / "corpora")) / "tinyshakespeare.txt"


def make_corpus(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size >= size:
        return
    lines = SOURCE.read_text(encoding="utf-8").splitlines(keepends=True)
    rng = np.random.default_rng(0)
    written = 0
    with open(path, "w", encoding="utf-8") as handle:
        while written < size:
            block = "".join(lines[i] for i in rng.permutation(len(lines)))
            block = block[: size - written]
            handle.write(block)
            written += len(block.encode("utf-8"))


def tokenise(path: Path, out: Path) -> tuple[float, int]:
    """Seconds for the two passes chargen makes (fit + count, then encode to ids.npy)."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    stream = open_corpus(str(path))
    tokenizer, stats = scan("char", stream.chunks())
    RunDir(out).write_ids((tokenizer.encode(c) for c in stream.chunks()), stats.tokens,
                          narrowest_dtype(tokenizer.vocab_size))
    return time.perf_counter() - start, stats.tokens


TRAIN = """
import json, resource, statistics, sys
from chargen import api
from chargen.checkpoint import RunDir
result = api.train(sys.argv[1], sys.argv[2], quiet=True, hidden_size=256, num_layers=1,
                   max_steps=int(sys.argv[3]), log_every=5, eval_every=10**9, eval_chars=20000,
                   device="cpu", auto=False)
rates = [r["chars_per_s"] for r in RunDir(sys.argv[2]).read_metrics() if "chars_per_s" in r]
print(json.dumps({"rate": statistics.median(rates[1:]),
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def train(path: Path, out: Path, steps: int) -> dict:
    done = subprocess.run([sys.executable, "-c", TRAIN, str(path), str(out), str(steps)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/chargen-scale"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, size in (("1 MB", 1 << 20), (f"{args.size_mb} MB", args.size_mb << 20)):
        corpus = args.workdir / f"corpus-{size}.txt"
        make_corpus(corpus, size)
        seconds, tokens = tokenise(corpus, args.workdir / f"ids-{size}")
        runs = []
        for attempt in range(3):
            out = args.workdir / f"run-{size}-{attempt}-{time.time_ns()}"
            runs.append(train(corpus, out, args.steps))
        rate = statistics.median(r["rate"] for r in runs)
        rss = max(r["rss"] for r in runs)
        rows.append([label, f"{size / seconds / 1e6:,.0f}", f"{rss / 2**20:,.0f}",
                     f"{rss / size:.2f}", f"{rate:,.0f}", f"{64 * 100 / rate * 1000:.0f}"])
    base_step = float(rows[0][5])
    precision = "bf16 autocast" if native_bf16() else "fp32 (no native bf16 here)"
    note = (f"Training: 1x256 LSTM, batch 64 x 100, {precision}, {args.steps} steps, median "
            f"of 3 runs each; the big corpus's step time is "
            f"{float(rows[1][5]) / base_step:.2f}x the small one's. Tokenising = both passes "
            "(fit + count, then encode to ids.npy). Peak RSS is the training process's "
            "ru_maxrss, which includes tokenising the corpus and torch itself.")
    record("Memory and scale", table(
        ["corpus", "tokenise MB/s", "peak RSS MB", "peak RSS per corpus byte", "train chars/s",
         "step ms"], rows) + "\n\n" + note)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


if __name__ == "__main__":
    main()
