"""Validation loss reached in a fixed wall-clock budget, for several configurations.

    python benchmarks/quality.py --corpus ../shared/corpora/tinyshakespeare.txt \
        --budget 10m --config default --config sequences

Each configuration trains through chargen.train (one at a time: never two heavy jobs on
this machine) and the table reports the best validation nats/char and bits/char, the step
of the best, steps done and throughput. Runs are kept under --runs for their metrics.
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

from chargen import api
from chargen.checkpoint import RunDir
from chargen.config import parse_duration

CONFIGS = {
    "default": {},
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
        settings[key] = _number(value)
    return text, settings


def _number(value: str):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def train_one(corpus: str, budget: float, settings: dict, out: Path) -> dict:
    started = time.monotonic()
    result = api.train(corpus, str(out), quiet=True, max_time=budget, **settings)
    records = RunDir(result.run_dir).read_metrics()
    rates = [r["chars_per_s"] for r in records if "chars_per_s" in r]
    return {"best": result.best_val, "best_step": result.best_step, "steps": result.steps,
            "rate": statistics.median(rates) if rates else math.nan,
            "wall": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--budget", type=parse_duration, default=parse_duration("10m"))
    parser.add_argument("--config", action="append", type=parse_config,
                        help=f"one of {', '.join(CONFIGS)}, optionally NAME:key=value,...")
    parser.add_argument("--runs", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    runs = args.runs or Path(tempfile.mkdtemp(prefix="chargen-quality-"))
    configs = args.config or [parse_config("default")]
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, corpus "
          f"{args.corpus}, budget {args.budget:.0f} s, runs in {runs}")
    print("| config | budget s | best val nats/char | bits/char | best step | steps | chars/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for i, (name, settings) in enumerate(configs):
        row = train_one(args.corpus, args.budget, settings, runs / f"{i}-{name.replace(':', '_')}")
        print(f"| {name} | {args.budget:.0f} | {row['best']:.4f} | {row['best'] / math.log(2):.3f} "
              f"| {row['best_step']} | {row['steps']} | {row['rate']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
