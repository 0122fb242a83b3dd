"""Validation loss reached in a fixed wall-clock budget, for several configurations and corpora.

    python benchmarks/quality.py --corpus ../shared/corpora/tinyshakespeare.txt \
        --corpus ../shared/corpora/alice.txt --budget 10m --config auto --config plain-loop --record

Each configuration trains for the budget (one at a time: never two heavy jobs on this
machine): chargen's through chargen.train, `plain-loop` through the plain PyTorch program of
plain.py (random windows, Adam, fp32). Every contender is then scored by the same two
evaluators on the same validation text (the corpus's last 10%), in float32: `carried` reads
it as streams with the state carried through (chargen's own measure), `fresh` in windows of
100 each from a zero state (the plain programs' measure). For chargen's runs the weights
scored are its best checkpoint (chosen by its own evaluation) and the table also shows
chargen's own best figure. `auto` shows what auto-configuration chose. With --record the
table also replaces its section of benchmarks/RESULTS.md. Runs are kept under --runs.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine, parse_value, record, table
from plain import score, train_plain

from chargen import api
from chargen.checkpoint import RunDir
from chargen.config import parse_duration
from chargen.corpus import open_corpus
from chargen.data import split_ids
from chargen.documents import split_run_ids
from chargen.tokenizer import scan

STRONG = {"dropout": 0.4, "locked_dropout": True, "weight_drop": 0.4, "embedding_dropout": 0.1,
          "seq_len_jitter": 0.2}
CONFIGS = {
    "auto": {"auto": True},  # what `chargen train CORPUS --max-time T` picks
    "default": {},
    "awd": STRONG,  # the default size with AWD-LSTM style regularisation
    "2x384-awd": {"hidden_size": 384, **STRONG},
    "2x768-awd": {"hidden_size": 768, **STRONG, "dropout": 0.3, "weight_drop": 0.2},
    "sequences": {"batching": "sequences"},
    "plain-loop": {"plain": True},  # plain.py: not chargen at all
    "plain-1x256": {"hidden_size": 256, "num_layers": 1, "dropout": 0.0, "precision": "fp32",
                    "schedule": "constant", "optimizer": "adam", "warmup_steps": 0},
    "1x256": {"hidden_size": 256, "num_layers": 1, "dropout": 0.0},
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


def corpus_ids(corpus: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(train, validation, vocabulary size) read and split as chargen's defaults do."""
    stream = open_corpus(corpus)
    tokenizer, _ = scan("char", stream.chunks())
    ids = np.concatenate(list(tokenizer.encode_chunks(stream.chunks())))
    train, val = split_ids(ids, 0.1, 100)
    return train, val, tokenizer.vocab_size


def train_one(corpus: str, budget: float, settings: dict, out: Path) -> dict:
    if settings.get("plain"):
        train, val, vocab = corpus_ids(corpus)
        started = time.monotonic()
        model, steps = train_plain(train, vocab, budget)
        rate = steps * 64 * 100 / (time.monotonic() - started)
        return {**score(model, val), "own": math.nan, "steps": steps, "rate": rate,
                "chosen": ""}
    settings = {"auto": False, **settings}  # only the `auto` contender is auto-configured
    result = api.train(corpus, str(out), quiet=True, max_time=budget, **settings)
    run = RunDir(result.run_dir)
    chosen = run.read_meta()["corpus"].get("auto_config", {}).get("chosen", {})
    rates = [r["chars_per_s"] for r in run.read_metrics() if "chars_per_s" in r]
    _, val = split_run_ids(run.read_ids(), run.read_config().data, run.read_tokenizer())
    return {**score(api.load(str(run.path), device="cpu").net, val), "own": result.best_val,
            "steps": result.steps, "rate": statistics.median(rates) if rates else math.nan,
            "chosen": " ".join(f"{k}={v}" for k, v in chosen.items())}


HEADERS = ["corpus", "config", "budget s", "carried nats/char", "fresh-100 nats/char",
           "chargen's own best", "steps", "chars/s", "auto chose"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", action="append", required=True, help="repeatable")
    parser.add_argument("--budget", type=parse_duration, default=parse_duration("10m"))
    parser.add_argument("--config", action="append", type=parse_config,
                        help=f"one of {', '.join(CONFIGS)}, optionally NAME:key=value,... "
                             "(default: auto, default and plain-loop)")
    parser.add_argument("--runs", type=Path, default=None)
    parser.add_argument("--record", action="store_true", help="write the table to RESULTS.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    runs = args.runs or Path(tempfile.mkdtemp(prefix="chargen-quality-"))
    configs = args.config or [parse_config(name) for name in ("auto", "default", "plain-loop")]
    print(f"# {machine()}, budget {args.budget:.0f} s, runs in {runs}")
    print("| " + " | ".join(HEADERS) + " |")
    rows = []
    for c, corpus in enumerate(args.corpus):
        for i, (name, settings) in enumerate(configs):
            out = runs / f"{c}-{Path(corpus).stem}-{i}-{name.replace(':', '_')}"
            row = train_one(corpus, args.budget, settings, out)
            rows.append([Path(corpus).name, name, f"{args.budget:.0f}", f"{row['carried']:.4f}",
                         f"{row['fresh']:.4f}", f"{row['own']:.4f}", row["steps"],
                         f"{row['rate']:,.0f}", row["chosen"] or "-"])
            print("| " + " | ".join(str(cell) for cell in rows[-1]) + " |", flush=True)
    if args.record:
        record(f"Quality: best validation loss in {args.budget:.0f} s", table(HEADERS, rows))


if __name__ == "__main__":
    main()
