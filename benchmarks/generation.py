"""Generation speed: chargen's sampler against the plain stateful loop a competent user would
write, at batch 1 and batch 64; for a window model of the same size (tutorial B: every new
character predicted from the last 100), the plain loop that re-reads the window for every
character against chargen's window sampling; and, with the onnx extra installed, the ONNX
export sampled through onnxruntime at batch 1.

    python benchmarks/generation.py [--length 2000] [--rounds 3]

Both batch sizes generate the same length from the same prompt. FLOPs per generated character
= 2 x (the weights a decoding step multiplies: every layer's hidden matrix, the input matrix of
every layer but the first, whose input gates are a table lookup, and the output layer). Batch 64
cannot beat batch 1 by more than (matmul rate) / (FLOPs per character x batch-1 rate): the
"ceiling" column, what batch 64 would reach at the machine's full matmul rate in the precision
chargen's auto uses here (bf16 where the CPU has it natively, else fp32).
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path

import torch
from common import alternate, peak_rate, rate, record, table
from torch import nn

from chargen.config import DataConfig, ModelConfig, SampleConfig
from chargen.generate.sample import generate_ids
from chargen.kinds import RunKind
from chargen.model import RNNLanguageModel
from chargen.tokenizer import CharTokenizer

VOCAB = 65
WINDOW = 100
MODELS = {"1x256 LSTM": ModelConfig(hidden_size=256, num_layers=1),
          "2x512 LSTM": ModelConfig(hidden_size=512, num_layers=2),
          "1x1024 GRU": ModelConfig(cell="gru", hidden_size=1024, num_layers=1)}


class PlainModel(nn.Module):
    """The baseline: nn.Embedding -> nn.LSTM/GRU -> nn.Linear, as in the tutorials."""

    def __init__(self, source: RNNLanguageModel):
        super().__init__()
        self.embedding, self.rnn, self.head = source.embedding, source.rnn, source.head


@torch.no_grad()
def plain_loop(model: PlainModel, prompt: torch.Tensor, length: int, temperature=0.8):
    ids, state = prompt.view(1, -1), None
    for _ in range(length):
        out, state = model.rnn(model.embedding(ids), state)
        probs = torch.softmax(model.head(out[:, -1]) / temperature, dim=-1)
        ids = torch.multinomial(probs, 1)


@torch.no_grad()
def sliding_window(model: PlainModel, prompt: torch.Tensor, length: int, window=WINDOW):
    ids = prompt.tolist()
    for _ in range(length):
        context = torch.tensor([ids[-window:]])
        out, _ = model.rnn(model.embedding(context))
        ids.append(int(model.head(out[:, -1]).argmax()))


def chargen_loop(model: RNNLanguageModel, prompt, length: int, num: int = 1,
                 precision: str = "auto"):
    config = SampleConfig(length=length, num=num, temperature=0.8, seed=0, precision=precision)
    for _ in generate_ids(model, prompt, config):
        pass


HAS_ONNX = all(importlib.util.find_spec(name) for name in ("onnx", "onnxscript", "onnxruntime"))


def onnx_model(model: RNNLanguageModel, directory: Path):
    """The model exported as `chargen export` writes it, loaded for sampling."""
    from chargen.export import write_export
    from chargen.onnx_sampler import load_export

    tokenizer = CharTokenizer([chr(ord("!") + i) for i in range(VOCAB - 1)])
    return load_export(write_export(model, tokenizer, DataConfig(), directory / "export"))


def onnx_loop(exported, prompt, length: int):
    config = SampleConfig(length=length, temperature=0.8, seed=0)
    for _ in exported.generate_ids(prompt.numpy(), config):
        pass


def flops_per_char(config: ModelConfig) -> float:
    gates = 4 if config.cell == "lstm" else 3
    square = gates * config.hidden_size * config.hidden_size
    return 2.0 * (square * (2 * config.num_layers - 1) + VOCAB * config.hidden_size)


def measure(model: RNNLanguageModel, n: int, rounds: int, scratch: Path) -> dict[str, float]:
    plain = PlainModel(model).eval()
    windowed = RNNLanguageModel(model.config, VOCAB, RunKind("window", WINDOW, vocab_size=VOCAB))
    plain_windowed = PlainModel(windowed.eval()).eval()
    prompt = torch.randint(1, VOCAB, (100,))
    contenders = {
        "plain": lambda: rate(n, lambda: plain_loop(plain, prompt, n)),
        "chargen": lambda: rate(n, lambda: chargen_loop(model, prompt, n)),
        "chargen64": lambda: rate(64 * n, lambda: chargen_loop(model, prompt, n, 64)),
        "window": lambda: rate(n // 10, lambda: sliding_window(plain_windowed, prompt, n // 10)),
        "chargen_window": lambda: rate(n // 10, lambda: chargen_loop(windowed, prompt, n // 10)),
    }
    if HAS_ONNX:
        exported = onnx_model(model, scratch)
        contenders["onnx"] = lambda: rate(n, lambda: onnx_loop(exported, prompt, n))
    return alternate(contenders, rounds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--length", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hidden-scale", type=float, default=1.0,
                        help="multiply every model's hidden size (a smoke test uses 0.05)")
    args = parser.parse_args()
    torch.manual_seed(0)
    peak_name, peak = peak_rate()
    rows = []
    for name, full in MODELS.items():
        config = ModelConfig(cell=full.cell, num_layers=full.num_layers,
                             hidden_size=max(8, int(full.hidden_size * args.hidden_scale)))
        with tempfile.TemporaryDirectory() as scratch:
            figures = measure(RNNLanguageModel(config, VOCAB).eval(), args.length, args.rounds,
                              Path(scratch))
        flops = flops_per_char(config)
        rows.append([name, f"{figures['plain']:,.0f}", f"{figures['chargen']:,.0f}",
                     f"{figures['chargen'] / figures['plain']:.2f}x",
                     f"{figures['chargen64']:,.0f}",
                     f"{figures['chargen64'] / figures['chargen']:.1f}x",
                     f"{peak / (flops * figures['chargen']):.1f}x",
                     f"{100 * figures['chargen64'] * flops / peak:.0f}%",
                     f"{figures['window']:,.0f}", f"{figures['chargen_window']:,.0f}",
                     f"{figures['chargen_window'] / figures['window']:.1f}x",
                     *([f"{figures['onnx']:,.0f}", f"{figures['onnx'] / figures['chargen']:.2f}x"]
                       if HAS_ONNX else [])])
    record("Generation (characters per second)", table(
        ["model", "plain loop, batch 1", "chargen, batch 1", "chargen / plain",
         "chargen, batch 64 (total)", "batch 64 / batch 1", "ceiling", f"batch 64 MFU ({peak_name})",
         "window model: plain sliding loop", "window model: chargen", "chargen / plain (window)",
         *(["onnxruntime export, batch 1", "onnx / chargen"] if HAS_ONNX else [])],
        rows) + f"\n\nMedian of {args.rounds} alternating rounds; "
        f"{args.length} characters per sample at batch 1 and 64 ({args.length // 10} for window "
        f"models: one sample, windows of {WINDOW}), temperature 0.8. "
        f"{peak_name} matmul 2048^3 in the same run (the precision chargen's auto uses here): "
        f"{peak / 1e9:.0f} GFLOP/s."
        + (f" Hidden sizes scaled by {args.hidden_scale}." if args.hidden_scale != 1 else ""))


if __name__ == "__main__":
    main()
