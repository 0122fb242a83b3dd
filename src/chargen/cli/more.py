"""The smaller commands: presets, info, demo, the alphabet experiment, serve and plot."""

from __future__ import annotations

import argparse
import logging

from ..config import PRESET_NOTES, PRESETS, DataConfig, ModelConfig, TrainConfig
from ..errors import ChargenError
from .commands import _print_samples, _report_training
from .flags import as_flags, given_settings

log = logging.getLogger("chargen")


def cmd_presets(args: argparse.Namespace) -> int:
    import textwrap

    for name, settings in PRESETS.items():
        shown = ", ".join(as_flags(settings, ModelConfig, DataConfig, TrainConfig))
        print(textwrap.fill(f"{name}: {shown or '(the defaults)'}", width=100,
                            subsequent_indent="    ", break_on_hyphens=False))
        if name in PRESET_NOTES:
            print(f"    ({PRESET_NOTES[name]})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import math

    from .. import api
    from ..progress import format_duration

    info = api.run_info(args.run)
    corpus = info["corpus"]
    model = info["config"]["model"]
    print(f"run          {info['run']} (chargen {info['chargen_version']})")
    encoding = model.get("input_encoding", "embedding")
    inputs = f"embedding {model['embedding_dim']}" if encoding == "embedding" else f"{encoding} input"
    print(f"model        {model['cell'].upper()} {model['num_layers']}x{model['hidden_size']}, "
          f"{inputs}, dropout {model['dropout']}; "
          f"{info['parameters']:,} parameters, vocabulary {info['vocabulary']}")
    print(f"corpus       {corpus.get('name')}: {corpus.get('characters', 0):,} characters, "
          f"{corpus.get('distinct_characters', 0):,} distinct; {corpus.get('train_tokens', 0):,} "
          f"train / {corpus.get('val_tokens', 0):,} validation tokens")
    if corpus.get("init_from"):
        print(f"fine-tuned   from {corpus['init_from']}")
    if info.get("steps") is not None:
        best = info["best_val"]
        best_text = (f"{best:.4f} nats/char ({best / math.log(2):.3f} bits/char) at step "
                     f"{info['best_step']}" if best is not None and math.isfinite(best) else "none")
        print(f"trained      {info['steps']:,} steps in {format_duration(info['seconds_trained'])}"
              f"; best validation {best_text}")
    else:
        print("trained      not yet")
    for section in ("data", "train"):
        shown = ", ".join(f"{k}={v}" for k, v in info["config"][section].items())
        print(f"{section:<12} {shown}")
    for name, size in info["files"].items():
        print(f"  {name:<20} {size:>12,} bytes")
    return 0


DEMO_SECONDS = 110.0


def cmd_demo(args: argparse.Namespace) -> int:
    from .. import api

    # The budget only: the model is chosen for this machine's measured speed, as `train` does.
    overrides = {"max_time": args.max_time or DEMO_SECONDS, "eval_every": 100}
    result = api.train("builtin:python-docs", args.out, **overrides)
    _report_training(result)
    model = api.load(str(result.run_dir))
    print(f"validation: {result.best_val:.4f} nats/char = {result.best_bits:.3f} bits/char\n")
    for i in range(3):
        prime = model.random_prime(seed=i)
        _print_samples(model, prime, {"length": 300, "temperature": 0.8, "seed": i, "num": 1})
        print()
    print(f"run directory: {result.run_dir}")
    return 0


def cmd_alphabet(args: argparse.Namespace) -> int:
    import json

    from ..experiments import alphabet

    log.info("alphabet: %d models (4 framings x 2 inputs x %d seeds), %d epochs each, batch 1",
             8 * args.seeds, args.seeds, args.epochs)
    result = alphabet.run_experiment(epochs=args.epochs, seeds=args.seeds)
    print(json.dumps(result, indent=2) if args.json else alphabet.format_table(result))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from ..serve import ServeLimits, serve
    except ImportError as err:
        raise ChargenError(f"chargen serve needs FastAPI and uvicorn ({err}); install them with "
                           "pip install 'chargen[serve]'") from None
    limits = ServeLimits(**given_settings(args, ServeLimits)).validate()
    serve(args.run, args.host, args.port, limits, which=args.which, device=args.device,
          threads=args.threads)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from ..plot import plot_runs

    log.info("wrote %s", plot_runs(args.runs, args.out))
    return 0
