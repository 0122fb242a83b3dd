"""The GPU check (benchmarks/gpu.sh runs it): one script that fits in about 8 minutes on one GPU.

    python benchmarks/gpu.py [--corpus ../shared/corpora/tinyshakespeare.txt] [--device cuda]
                             [--minutes 3] [--quick]

1. Training throughput of the four benchmark models: plain PyTorch (fp32), chargen fp32 and
   chargen bf16 autocast, with MFU against the GPU's measured matmul rates.
2. Generation at batch 1 and 64 (chargen's sampler, its default precision).
3. A default run on tiny Shakespeare for --minutes (auto-configuration, the default
   precision): its best validation loss, steps and what auto chose.
4. torchrun on every visible GPU (gpu.sh does this part; its figures are appended).

`--device cpu --quick` runs the same code on a CPU in about a minute (a smoke test of the script,
not a GPU figure).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
from pathlib import Path

import torch
from common import gpu_matmul_rate, matmul_rate, rate, record, table
from generation import MODELS, VOCAB, chargen_loop
from training import CASES, chargen_trainer, corpus_ids, flops_per_char, plain_baseline

from chargen import api
from chargen.checkpoint import RunDir
from chargen.model import RNNLanguageModel


def peak_rates(device: str) -> dict[str, float]:
    if device == "cuda":
        return {"fp32": gpu_matmul_rate(torch.float32), "bf16": gpu_matmul_rate(torch.bfloat16)}
    return {"fp32": matmul_rate(torch.float32), "bf16": matmul_rate(torch.bfloat16)}


def training_rows(device: str, quick: bool, peaks: dict[str, float]) -> list[list[str]]:
    ids, rows = corpus_ids(), []
    for name, (config, batch, seq_len, steps) in list(CASES.items())[: 2 if quick else None]:
        steps = max(6, steps if quick else 5 * steps)
        plain = plain_baseline(config, ids, batch, seq_len, steps, device)
        fp32, bf16 = (chargen_trainer(config, ids, batch, seq_len, steps, precision, device)
                      for precision in ("fp32", "bf16"))
        flops = flops_per_char(config)
        rows.append([name, f"{batch}x{seq_len}", f"{plain:,.0f}", f"{fp32:,.0f}",
                     f"{fp32 / plain:.2f}x", f"{bf16:,.0f}", f"{bf16 / plain:.2f}x",
                     f"{100 * fp32 * flops / peaks['fp32']:.1f}%",
                     f"{100 * bf16 * flops / peaks['bf16']:.1f}%"])
    return rows


def generation_rows(device: str, length: int) -> list[list[str]]:
    rows = []
    for name, config in MODELS.items():
        model = RNNLanguageModel(config, VOCAB).to(device).eval()
        prompt = torch.randint(1, VOCAB, (100,), device=device)
        chargen_loop(model, prompt, 10)  # warm-up: kernels, allocator
        one = rate(length, lambda m=model, p=prompt: chargen_loop(m, p, length))
        many = rate(64 * length, lambda m=model, p=prompt: chargen_loop(m, p, length, 64))
        rows.append([name, f"{one:,.0f}", f"{many:,.0f}", f"{many / one:.1f}x"])
    return rows


def default_run(corpus: str, device: str, seconds: float, out: Path) -> list[str]:
    result = api.train(corpus, str(out), quiet=True, max_time=seconds, device=device)
    run = RunDir(result.run_dir)
    chosen = run.read_meta()["corpus"].get("auto_config", {}).get("chosen", {})
    rates = [r["chars_per_s"] for r in run.read_metrics() if "chars_per_s" in r]
    return [Path(corpus).name, f"{seconds:.0f}", f"{result.best_val:.4f}", str(result.steps),
            f"{statistics.median(rates):,.0f}", json.dumps(chosen)]


def report_torchrun(run_dir: str, gpus: int) -> None:
    run = RunDir(run_dir)
    records = run.read_metrics()
    rates = [r["chars_per_s"] for r in records if "chars_per_s" in r]
    best = [r["val_loss"] for r in records if "val_loss" in r]
    config = run.read_config()
    record(f"GPU check: torchrun on {gpus} GPU(s)", table(
        ["GPUs", "model", "global batch", "steps", "chars/s (all ranks)", "val nats/char"],
        [[gpus, f"{config.model.num_layers}x{config.model.hidden_size}",
          config.data.batch_size * gpus, max(r["step"] for r in records),
          f"{statistics.median(rates[1:] or rates):,.0f}",
          f"{min(best):.4f}" if best else "-"]]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--torchrun-run", help="report a torchrun run's speed (gpu.sh) and exit")
    parser.add_argument("--gpus", type=int, default=1)
    parser.add_argument("--corpus", default="../shared/corpora/tinyshakespeare.txt")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="the two small models, short runs")
    args = parser.parse_args()
    logging.getLogger("chargen").setLevel(logging.WARNING)
    if args.torchrun_run:
        report_torchrun(args.torchrun_run, args.gpus)
        return
    torch.manual_seed(0)
    name = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    peaks = peak_rates(args.device)
    text = f"Device: {name}. Matmul rates measured in the same run: " + ", ".join(
        f"{k} {v / 1e12:.1f} TFLOP/s" for k, v in peaks.items()) + ".\n\n"
    text += table(["model", "batch x seq", "plain PyTorch fp32", "chargen fp32", "ratio",
                   "chargen bf16", "ratio", "MFU fp32", "MFU bf16"],
                  training_rows(args.device, args.quick, peaks))
    text += "\n\nGeneration, chargen's sampler at its default precision, temperature 0.8:\n\n"
    text += table(["model", "batch 1 chars/s", "batch 64 chars/s (total)", "b64 / b1"],
                  generation_rows(args.device, args.length))
    with tempfile.TemporaryDirectory() as scratch:
        text += "\n\nA default run (`chargen train CORPUS --max-time T`):\n\n" + table(
            ["corpus", "budget s", "best val nats/char", "steps", "chars/s", "auto chose"],
            [default_run(args.corpus, args.device, args.minutes * 60, Path(scratch) / "run")])
    record(f"GPU check ({name})", text)


if __name__ == "__main__":
    main()
