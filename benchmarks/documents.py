"""Document mode: what a document run learns in a fixed budget, per unit.

    python benchmarks/documents.py --corpus ../shared/corpora/tinyshakespeare.txt \
        --unit line --unit sentence --unit paragraph --budget 5m --record

For each unit, one run (`--batching documents`) trains through chargen.train, one at a time;
the table gives the units and the train / validation split, the best validation loss (nats
per token, the [end] predictions included), the cost of gathering a batch, and of --num
samples at temperature 0.8: the share that ended at [end] before --length, their mean length
against the corpus's mean unit length, and the share that copy a training unit exactly.
--set KEY=VALUE (repeatable) passes settings to every run, e.g. --set hidden_size=256.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from common import parse_value, record, table

from chargen import api
from chargen.checkpoint import RunDir
from chargen.config import parse_duration
from chargen.documents import DocumentBatches, split_run_ids

HEADERS = ["corpus", "unit", "units (train / val)", "steps", "best val nats/token",
           "gather ms/batch", "ended at [end]", "mean sample / unit chars", "copies"]


def gather_ms(train, data, batches: int = 50) -> float:
    batcher = DocumentBatches(train, data.batch_size, data.seq_len, seed=0)
    times = []
    for step in range(batches):
        start = time.perf_counter()
        batcher.batch(step)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(corpus: str, unit: str, args, settings: dict) -> list:
    out = Path(args.runs) / f"{Path(corpus).stem}-{unit}"
    result = api.train(corpus, str(out), quiet=True, batching="documents", document_unit=unit,
                       max_time=args.budget, auto=False, **settings)
    run = RunDir(result.run_dir)
    config, tokenizer = run.read_config(), run.read_tokenizer()
    train, val = split_run_ids(run.read_ids(), config.data, tokenizer)
    units = {tokenizer.decode(train.ids[a:b]) for a, b in zip(train.starts, train.ends)}
    unit_chars = statistics.mean(len(text) for text in units)
    texts = api.load(str(result.run_dir)).sample(num=args.num, length=args.length, seed=0,
                                                  temperature=0.8)
    ended = sum(len(tokenizer.encode(text)) < args.length for text in texts) / len(texts)
    copies = sum(text in units for text in texts) / len(texts)
    return [Path(corpus).name, unit, f"{train.units:,} / {val.units:,}", result.steps,
            f"{result.best_val:.4f}", f"{gather_ms(train, config.data):.2f}", f"{ended:.0%}",
            f"{statistics.mean(map(len, texts)):.1f} / {unit_chars:.1f}", f"{copies:.0%}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", action="append", required=True)
    parser.add_argument("--unit", action="append", choices=("line", "sentence", "paragraph"))
    parser.add_argument("--budget", type=parse_duration, default=parse_duration("5m"))
    parser.add_argument("--num", type=int, default=200, help="samples per run (200)")
    parser.add_argument("--length", type=int, default=1000, help="most tokens per sample (1000)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--runs", default=None, help="where the runs are kept (default: a temp dir)")
    parser.add_argument("--record", action="store_true", help="replace the section in RESULTS.md")
    args = parser.parse_args()
    args.runs = args.runs or tempfile.mkdtemp(prefix="chargen-documents-")
    settings = {key: parse_value(value) for key, _, value in (s.partition("=") for s in args.set)}
    logging.basicConfig(level=logging.WARNING)
    rows = [measure(corpus, unit, args, settings)
            for corpus in args.corpus for unit in (args.unit or ["line"])]
    text = table(HEADERS, rows) + f"\n\nRuns kept in {args.runs}; budget {args.budget:g} s each."
    if args.record:
        record("Document mode", text)
    else:
        print(text)


if __name__ == "__main__":
    main()
