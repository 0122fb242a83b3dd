"""int8 generation: `chargen sample --precision int8` against fp32, speed and quality.

    python benchmarks/int8.py [--length 1000] [--rounds 3] [--run RUN ...]

Speed: chars/s of chargen's sampler at batch 1 and 64 for untrained models of the benchmark
sizes (speed does not depend on the weights' values), fp32 and int8, alternating rounds.
Quality (each --run): the next-character loss of the run's validation text read by the
decoder itself, step by step with the state carried (what generation computes), with fp32 and
with int8 weights: the difference is what quantisation costs.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import alternate, rate, record, table
from generation import MODELS, VOCAB, chargen_loop
from torch.nn import functional as F

from chargen import api
from chargen.decode import Decoder, decode_dtype
from chargen.documents import split_run_ids
from chargen.model import RNNLanguageModel


def speed_rows(length: int, rounds: int) -> list[list[str]]:
    rows = []
    for name, config in MODELS.items():
        model = RNNLanguageModel(config, VOCAB).eval()
        prompt = torch.randint(1, VOCAB, (100,))
        figures = alternate({
            f"{precision}{num}": lambda p=precision, n=num, m=model, x=prompt: rate(
                n * length, lambda: chargen_loop(m, x, length, n, p))
            for precision in ("fp32", "int8") for num in (1, 64)}, rounds)
        rows.append([name, *(f"{figures[k]:,.0f}" for k in ("fp321", "int81")),
                     f"{figures['int81'] / figures['fp321']:.2f}x",
                     *(f"{figures[k]:,.0f}" for k in ("fp3264", "int864")),
                     f"{figures['int864'] / figures['fp3264']:.2f}x"])
    return rows


@torch.inference_mode()
def decoder_loss(model: RNNLanguageModel, ids: np.ndarray, precision: str, streams: int = 64,
                 steps: int = 500) -> float:
    """Mean next-token loss of `streams` x `steps` validation tokens, read by the decoder."""
    length = min(steps, (len(ids) - 1) // streams)
    starts = np.arange(streams) * ((len(ids) - 1) // streams)
    window = torch.from_numpy(ids[starts[:, None] + np.arange(length + 1)].astype(np.int64))
    decoder = Decoder(model, decode_dtype(torch.device("cpu"), streams,
                                          model.config.hidden_size, precision), rows=streams)
    layers, total = decoder.split_state(model.init_state(streams)), 0.0
    for t in range(length):
        logits, layers = decoder.step(window[:, t], layers)
        total += float(F.cross_entropy(logits, window[:, t + 1], reduction="sum"))
    return total / (streams * length)


def quality_rows(runs: list[str]) -> list[list[str]]:
    rows = []
    for path in runs:
        loaded = api.load(path, device="cpu")
        _, val = split_run_ids(loaded.run.read_ids(), loaded.config.data, loaded.tokenizer)
        fp32, int8 = (decoder_loss(loaded.net, np.asarray(val), p) for p in ("fp32", "int8"))
        model = loaded.config.model
        rows.append([path, f"{model.num_layers}x{model.hidden_size} {model.cell.upper()}",
                     f"{fp32:.4f}", f"{int8:.4f}", f"{int8 - fp32:+.4f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--run", action="append", default=[],
                        help="trained runs whose validation loss to compare (repeatable)")
    args = parser.parse_args()
    torch.manual_seed(0)
    text = table(["model", "fp32 b1", "int8 b1", "int8 / fp32", "fp32 b64 (total)",
                  "int8 b64 (total)", "int8 / fp32"], speed_rows(args.length, args.rounds))
    text += (f"\n\nMedian of {args.rounds} alternating rounds, {args.length} characters per "
             "sample, temperature 0.8, untrained models.")
    if args.run:
        text += "\n\n" + table(["run", "model", "fp32 nats/char", "int8 nats/char", "int8 - fp32"],
                               quality_rows(args.run))
        text += ("\n\nValidation text read by the decoder (64 streams x 500 characters from "
                 "evenly spaced starts, state carried).")
    record("int8 generation (characters per second, validation loss)", text)


if __name__ == "__main__":
    main()
