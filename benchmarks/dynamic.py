"""Dynamic evaluation and adapting to a document: what they gain on a trained run, and the
settings that gain most.

    python benchmarks/dynamic.py --run RUN [--document FILE] [--record]

Dynamic evaluation: the run's validation text (the last part of its corpus, as training split
it) in two halves. Each setting of the grid is scored on the first half; the best one is then
reported on the second half (which chose nothing) and on the whole text, beside the static
loss of the same text read the same way (one stream, state carried, no updates).

Adapting (--document): the model adapts to the first half of a document, then both the
adapted copy and the run score the second half (held out): the gain is what adapting to a
text's first part does for its rest.
"""

from __future__ import annotations

import argparse
import itertools
import time

from common import record, table

from chargen import api
from chargen.config.adapt import ADAPT_DECAY, ADAPT_LR, ADAPT_SEGMENT
from chargen.documents import split_run_ids
from chargen.language_model import read_text

GRID = {"adapt_lr": (0.1, 0.3, 1.0, 3.0), "adapt_decay": (0.0, 0.001, 0.01, 0.03),
        "adapt_segment": (25, 50, 100)}


def validation_text(model) -> str:
    data = model.config.data
    _, val = split_run_ids(model.run.read_ids(), data, model.tokenizer)
    return model.tokenizer.decode(val)


def one_stream(model, text: str, **settings) -> tuple[float, float]:
    """(nats/char, seconds); without settings: no updates (the static loss read the same way)."""
    started = time.perf_counter()
    settings = settings or {"adapt_lr": 0.0, "adapt_decay": 0.0}
    nats = model.evaluate(text, dynamic=True, **settings).nats_per_char
    return nats, time.perf_counter() - started


def tune(model, text: str) -> tuple[dict, list[list[str]]]:
    rows, best = [], None
    static, _ = one_stream(model, text)
    for values in itertools.product(*GRID.values()):
        settings = dict(zip(GRID, values))
        nats, seconds = one_stream(model, text, **settings)
        rows.append([*(f"{v:g}" for v in values), f"{nats:.4f}", f"{nats - static:+.4f}",
                     f"{seconds:.0f}"])
        print(*rows[-1], flush=True)
        if best is None or nats < best[0]:
            best = (nats, settings)
    return best[1], rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--document", help="a text to adapt to (its first half) and score on "
                                           "(its second half)")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    model = api.load(args.run, device="cpu")
    text = validation_text(model)
    first, second = text[: len(text) // 2], text[len(text) // 2 :]
    chosen, grid_rows = tune(model, first)
    default = {"adapt_lr": ADAPT_LR, "adapt_decay": ADAPT_DECAY, "adapt_segment": ADAPT_SEGMENT}
    rows = []
    for name, part in (("second half (held out)", second), ("whole validation text", text)):
        static, _ = one_stream(model, part)
        for label, settings in (("chosen on the first half", chosen), ("the default", default)):
            nats, seconds = one_stream(model, part, **settings)
            rows.append([name, label, " ".join(f"{k}={v:g}" for k, v in settings.items()),
                         f"{static:.4f}", f"{nats:.4f}", f"{nats - static:+.4f}", f"{seconds:.0f}"])
    text_out = table(["text", "settings", "values", "static nats/char", "dynamic nats/char",
                      "gain", "seconds"], rows)
    text_out += "\n\nThe grid, on the first half of the validation text:\n\n" + table(
        [*GRID, "dynamic nats/char", "vs static", "seconds"], grid_rows)
    if args.document:
        document = read_text(model, args.document)
        head, rest = document[: len(document) // 2], document[len(document) // 2 :]
        before = model.evaluate(rest, allow_unknown=True).nats_per_char
        after = model.adapt(head, **default).evaluate(rest, allow_unknown=True).nats_per_char
        text_out += "\n\nAdapting to a document (" + args.document + "):\n\n" + table(
            ["held-out second half, before adapting", "after adapting to the first half",
             "gain"], [[f"{before:.4f}", f"{after:.4f}", f"{after - before:+.4f}"]])
    text_out += (f"\n\nRun: {args.run}. Static = the same text read as one stream with the state "
                 "carried and no updates; float32 on the CPU.")
    if args.record:
        record("Dynamic evaluation", text_out)
    else:
        print(text_out)


if __name__ == "__main__":
    main()
