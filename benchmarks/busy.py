"""Training beside a CPU-bound neighbour: chargen with a fixed thread count (torch's default,
all the cores) against chargen's default (the free cores, followed while training).

    python benchmarks/busy.py [--seconds 20] [--rounds 2]

Neighbours: none; one Python busy loop (a single-threaded program); a plain PyTorch training
with torch's default threads (what a user runs beside chargen). Each figure is the median
chars/s of chargen's own log windows (every 5 steps) after the first, for a 1x256 LSTM, batch 64 x 100, in
the default precision; the neighbour runs for the whole measurement.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from common import record, table

from chargen import api
from chargen.checkpoint import RunDir

PLAIN_TRAINING = """
import torch
from torch import nn
from torch.nn import functional as F
emb, rnn, head = nn.Embedding(65, 64), nn.LSTM(64, 256, batch_first=True), nn.Linear(256, 65)
params = [*emb.parameters(), *rnn.parameters(), *head.parameters()]
opt = torch.optim.Adam(params, 2e-3)
ids = torch.randint(0, 65, (64, 101))
print('spinning', flush=True)
while True:
    out, _ = rnn(emb(ids[:, :-1]))
    loss = F.cross_entropy(head(out).flatten(0, 1), ids[:, 1:].flatten())
    opt.zero_grad(); loss.backward(); opt.step()
"""
NEIGHBOURS = {
    "none": None,
    "one busy loop": "print('spinning', flush=True)\nwhile True: pass",
    "a plain PyTorch training (default threads)": PLAIN_TRAINING,
}


def train(corpus: Path, out: Path, seconds: float, threads: int) -> tuple[float, int]:
    """-> (median chars/s after the first log window, the thread count at the end)."""
    api.train(str(corpus), str(out), quiet=True, hidden_size=256, num_layers=1, dropout=0.0,
              batch_size=64, seq_len=100, max_time=seconds, log_every=5, eval_every=10**9,
              eval_chars=1000, device="cpu", threads=threads, auto=False)
    records = [r for r in RunDir(out).read_metrics() if "chars_per_s" in r]
    later = records[1:] or records  # a collapsed run may log only once
    return (statistics.median(r["chars_per_s"] for r in later),
            records[-1].get("threads", threads))


def beside(neighbour: str | None, run):
    """Run `run()` while `neighbour` (Python source) spins in another process."""
    if neighbour is None:
        return run()
    process = subprocess.Popen([sys.executable, "-c", neighbour], stdout=subprocess.PIPE,
                               text=True)
    try:
        process.stdout.readline()  # it has started its loop
        return run()
    finally:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    logging.getLogger("chargen").setLevel(logging.WARNING)
    cores = torch.get_num_threads()
    rows, quiet = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        corpus = Path(scratch) / "corpus.txt"
        corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 20_000)
        for name, neighbour in NEIGHBOURS.items():
            figures = {"fixed": [], "auto": []}
            threads_seen = []
            for round_ in range(args.rounds):
                for kind, setting in (("fixed", cores), ("auto", 0)):
                    out = Path(scratch) / f"{len(rows)}-{round_}-{kind}"
                    rate, threads = beside(neighbour, lambda o=out, s=setting: train(
                        corpus, o, args.seconds, s))
                    figures[kind].append(rate)
                    if kind == "auto":
                        threads_seen.append(threads)
            fixed, auto = (statistics.median(figures[k]) for k in ("fixed", "auto"))
            quiet = quiet or {"fixed": fixed, "auto": auto}
            rows.append([name, f"{fixed:,.0f}", f"{100 * fixed / quiet['fixed']:.0f}%",
                         f"{auto:,.0f}", f"{100 * auto / quiet['auto']:.0f}%",
                         "/".join(map(str, threads_seen)), f"{auto / fixed:.2f}x"])
    torch.set_num_threads(cores)  # the machine line names torch's default, not the last choice
    record("Training beside a busy neighbour (characters per second)", table(
        ["neighbour", f"--threads {cores} (torch's default)", "of quiet", "chargen default",
         "of quiet", "threads chosen", "default / fixed"], rows)
        + f"\n\nMedian of {args.rounds} alternating rounds of {args.seconds:.0f} s each; 1x256 "
        "LSTM, batch 64 x 100, default precision. 'threads chosen': the governor's count at the "
        "end of each round.")


if __name__ == "__main__":
    main()
