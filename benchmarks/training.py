"""Training throughput: chargen's trainer against the plain PyTorch program a competent user
would write (nn.Embedding -> nn.LSTM/GRU -> nn.Linear, full sequences, Adam, fp32), with
chargen in float32 and with its default precision (bf16 autocast where the CPU has it).
Also the model FLOPs utilisation against this machine's measured matmul rates.

    python benchmarks/training.py [--rounds 3] [--quick]

FLOPs per predicted character = 6 x (the weights every position multiplies: the recurrent
layers' input and hidden matrices and the output layer); 2 for the forward matmuls and 4 for
the backward ones. Embedding lookups, gate nonlinearities and the optimiser are not counted.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time

import numpy as np
import torch
from common import alternate, matmul_rate, peak_rate, record, table
from torch import nn
from torch.nn import functional as F

from chargen import api
from chargen.checkpoint import RunDir
from chargen.config import ModelConfig
from chargen.model import estimate_parameters

VOCAB = 65
CASES = {  # name: (model, batch, seq_len, steps per measurement)
    "1x256 LSTM": (ModelConfig(hidden_size=256, num_layers=1, dropout=0.0), 64, 100, 30),
    "2x512 LSTM": (ModelConfig(hidden_size=512, num_layers=2, dropout=0.0), 64, 100, 12),
    "1x1024 GRU": (ModelConfig(cell="gru", hidden_size=1024, num_layers=1, dropout=0.0), 64, 100, 6),
    "3x1024 LSTM": (ModelConfig(hidden_size=1024, num_layers=3, dropout=0.0), 64, 100, 4),
}


def corpus_ids(n: int = 2_000_000) -> np.ndarray:
    return np.random.default_rng(0).integers(0, VOCAB, n).astype(np.uint8)


def flops_per_char(config: ModelConfig) -> float:
    weights = estimate_parameters(config, VOCAB) - VOCAB * config.embedding_dim
    return 6.0 * weights


def plain_baseline(config: ModelConfig, ids: np.ndarray, batch: int, seq_len: int, steps: int,
                   device: str = "cpu"):
    cell = nn.LSTM if config.cell == "lstm" else nn.GRU
    embedding = nn.Embedding(VOCAB, config.embedding_dim).to(device)
    rnn = cell(config.embedding_dim, config.hidden_size, config.num_layers,
               batch_first=True).to(device)
    head = nn.Linear(config.hidden_size, VOCAB).to(device)
    params = [*embedding.parameters(), *rnn.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=2e-3)
    rng = np.random.default_rng(1)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        offsets = rng.integers(0, len(ids) - seq_len - 1, batch)
        window = torch.from_numpy(ids[offsets[:, None] + np.arange(seq_len + 1)].astype(np.int64))
        window = window.to(device)
        out, _ = rnn(embedding(window[:, :-1]))
        loss = F.cross_entropy(head(out).reshape(-1, VOCAB), window[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()
        times.append(time.perf_counter() - start)
    return batch * seq_len / statistics.median(times[1:])


def chargen_trainer(config: ModelConfig, ids: np.ndarray, batch: int, seq_len: int, steps: int,
                    precision: str, device: str = "cpu") -> float:
    """chars/s of chargen.train itself, from its own per-window log (first window dropped)."""
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,\n"))
    with tempfile.TemporaryDirectory() as out:
        corpus = os.path.join(out, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as handle:
            handle.write("".join(alphabet[ids[:200_000] % len(alphabet)].tolist()))
        api.train(corpus, os.path.join(out, "run"), quiet=True, auto=False,
                  cell=config.cell, hidden_size=config.hidden_size, num_layers=config.num_layers,
                  embedding_dim=config.embedding_dim, dropout=config.dropout, batch_size=batch,
                  seq_len=seq_len, max_steps=steps, log_every=1, eval_every=10**9,
                  eval_chars=1000, precision=precision, device=device)
        rates = [r["chars_per_s"] for r in RunDir(os.path.join(out, "run")).read_metrics()
                 if "chars_per_s" in r]
    return statistics.median(rates[1:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="the two small models only")
    args = parser.parse_args()
    logging.getLogger("chargen").setLevel(logging.WARNING)
    torch.manual_seed(0)
    ids = corpus_ids()
    fp32_rate, (peak_name, peak) = matmul_rate(torch.float32), peak_rate()
    rows = []
    cases = list(CASES.items())[: 2 if args.quick else None]
    for name, (config, batch, seq_len, steps) in cases:
        figures = alternate({
            "plain": lambda c=config, b=batch, t=seq_len, s=steps: plain_baseline(c, ids, b, t, s),
            "fp32": lambda c=config, b=batch, t=seq_len, s=steps: chargen_trainer(
                c, ids, b, t, s, "fp32"),
            "auto": lambda c=config, b=batch, t=seq_len, s=steps: chargen_trainer(
                c, ids, b, t, s, "auto"),
        }, args.rounds)
        flops = flops_per_char(config)
        rows.append([name, f"{batch}x{seq_len}", f"{figures['plain']:,.0f}",
                     f"{figures['fp32']:,.0f}", f"{figures['fp32'] / figures['plain']:.2f}x",
                     f"{figures['auto']:,.0f}", f"{figures['auto'] / figures['plain']:.2f}x",
                     f"{100 * figures['fp32'] * flops / fp32_rate:.0f}%",
                     f"{100 * figures['auto'] * flops / peak:.0f}%"])
    note = (f"Median of {args.rounds} alternating rounds. Best matmul 2048^3 (torch or oneDNN) "
            f"in the same run: fp32 {fp32_rate / 1e9:.0f} GFLOP/s, {peak_name} {peak / 1e9:.0f} "
            "GFLOP/s. MFU = chars/s x 6 x (recurrent and output weights) / that rate (fp32 column "
            "against the fp32 rate, default column against the rate of the default precision). "
            f"Default precision here: {'bf16 autocast' if peak_name == 'bf16' else 'fp32 (no native bf16)'}.")
    record("Training throughput (characters per second)", table(
        ["model", "batch x seq", "plain PyTorch fp32", "chargen fp32", "ratio",
         "chargen default", "ratio", "MFU fp32", f"MFU default vs {peak_name} peak"], rows) + "\n\n" + note)


if __name__ == "__main__":
    main()
