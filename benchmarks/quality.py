"""Validation loss reached in a fixed wall-clock budget, for several configurations and corpora.

    python benchmarks/quality.py --corpus ../shared/corpora/tinyshakespeare.txt \
        --corpus ../shared/corpora/alice.txt --budget 10m --config auto --config plain-1x256 --record

Each configuration trains through chargen.train (one at a time: never two heavy jobs on
this machine) and the table reports the best validation nats/char and bits/char, the step
of the best, steps done and throughput; `auto` shows what auto-configuration chose. With
--record the table also replaces its section of benchmarks/RESULTS.md. Runs are kept under
--runs for their metrics.
"""

from __future__ import annotations

import argparse
import logging
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path

from common import parse_value, record, table

from chargen import api
from chargen.checkpoint import RunDir
from chargen.config import parse_duration

STRONG = {"dropout": 0.4, "locked_dropout": True, "weight_drop": 0.4, "embedding_dropout": 0.1,
          "seq_len_jitter": 0.2}
CONFIGS = {
    "auto": {"auto": True},  # what `chargen train CORPUS --max-time T` picks
    "default": {},
    "awd": STRONG,  # the default size with AWD-LSTM style regularisation
    "2x384-awd": {"hidden_size": 384, **STRONG},
    "2x768-awd": {"hidden_size": 768, **STRONG, "dropout": 0.3, "weight_drop": 0.2},
    "sequences": {"batching": "sequences"},
    "plain-1x256": {"hidden_size": 256, "num_layers": 1, "dropout": 0.0, "precision": "fp32",
                    "schedule": "constant", "optimizer": "adam", "warmup_steps": 0},
    "1x256": {"hidden_size": 256, "num_layers": 1},
    "fp32": {"precision": "fp32"},
}


def parse_config(text: str) -> tuple[str, dict]:
    """NAME from CONFIGS, or NAME:key=value,key=value on top of the defaults."""
    name, _, extra = text.partition(":")
    settings = dict(CONFIGS.get(name, {}))
    for item in filter(None, extra.split(",")):
        key, _, value = item.partition("=")
        settings[key] = parse_value(value)
    return text, settings


def train_one(corpus: str, budget: float, settings: dict, out: Path) -> dict:
    started = time.monotonic()
    result = api.train(corpus, str(out), quiet=True, max_time=budget, **settings)
    run = RunDir(result.run_dir)
    records = run.read_metrics()
    chosen = run.read_meta()["corpus"].get("auto_config", {}).get("chosen", {})
    rates = [r["chars_per_s"] for r in records if "chars_per_s" in r]
    return {"best": result.best_val, "best_step": result.best_step, "steps": result.steps,
            "rate": statistics.median(rates) if rates else math.nan,
            "wall": time.monotonic() - started,
            "chosen": " ".join(f"{k}={v}" for k, v in chosen.items())}


HEADERS = ["corpus", "config", "budget s", "best val nats/char", "bits/char", "best step", "steps",
           "chars/s", "auto chose"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", action="append", required=True, help="repeatable")
    parser.add_argument("--budget", type=parse_duration, default=parse_duration("10m"))
    parser.add_argument("--config", action="append", type=parse_config,
                        help=f"one of {', '.join(CONFIGS)}, optionally NAME:key=value,... "
                             "(default: auto, default and plain-1x256)")
    parser.add_argument("--runs", type=Path, default=None)
    parser.add_argument("--record", action="store_true", help="write the table to RESULTS.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    runs = args.runs or Path(tempfile.mkdtemp(prefix="chargen-quality-"))
    configs = args.config or [parse_config(name) for name in ("auto", "default", "plain-1x256")]
    print(f"# {platform.node()}, budget {args.budget:.0f} s, runs in {runs}")
    print("| " + " | ".join(HEADERS) + " |")
    rows = []
    for c, corpus in enumerate(args.corpus):
        for i, (name, settings) in enumerate(configs):
            out = runs / f"{c}-{Path(corpus).stem}-{i}-{name.replace(':', '_')}"
            row = train_one(corpus, args.budget, settings, out)
            rows.append([Path(corpus).name, name, f"{args.budget:.0f}", f"{row['best']:.4f}",
                         f"{row['best'] / math.log(2):.3f}", row["best_step"], row["steps"],
                         f"{row['rate']:,.0f}", row["chosen"] or "-"])
            print("| " + " | ".join(str(cell) for cell in rows[-1]) + " |", flush=True)
    if args.record:
        record(f"Quality: best validation loss in {args.budget:.0f} s", table(HEADERS, rows))


if __name__ == "__main__":
    main()
