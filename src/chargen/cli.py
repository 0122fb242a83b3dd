"""The command line: a thin layer over chargen.api. torch is imported only when a command
runs, so `chargen --help` stays fast."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import signal
import sys

from . import __version__
from .config import (
    BATCHINGS,
    PRESET_NOTES,
    PRESETS,
    DataConfig,
    ModelConfig,
    TrainConfig,
    parse_duration,
    preset,
)
from .errors import ChargenError

log = logging.getLogger("chargen")


class _Parser(argparse.ArgumentParser):
    """argparse with chargen's one-line error format."""

    def error(self, message: str):
        self.exit(2, f"chargen: error: {message} (see: {self.prog} --help)\n")


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ChargenError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--max-time ")) from None


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _add_framing_flags(parser, model, data) -> None:
    """The tutorials' framings, input encodings and checkpoint rule (framing.py, encoding.py)."""
    model.add_argument("--input-encoding", choices=("embedding", "onehot", "scalar"),
                       help="embedding (default), one-hot, or scalar: id / vocabulary size")
    model.add_argument("--input-dropout", type=float, metavar="P",
                       help="dropout on the input features, element by element, as a Keras "
                            "Dropout layer before the LSTM (default 0; --embedding-dropout "
                            "is the same, but one mask per sequence with --locked-dropout)")
    model.add_argument("--bidirectional", action=argparse.BooleanOptionalAction,
                       help="read the window both ways (window framings only)")
    model.add_argument("--init", choices=("torch", "keras"),
                       help="initial weights: PyTorch's (default) or Keras 1's, as the tutorials "
                            "trained (glorot-uniform and orthogonal per gate, forget bias 1)")
    data.add_argument("--window", type=int, metavar="N",
                      help="ids before each predicted one, for the window framings (default 100)")
    data.add_argument("--window-layout", choices=("time-steps", "features"),
                      help="the window as time steps (default) or as the features of one step")
    data.add_argument("--keep-case", dest="lowercase", action="store_const", const=False,
                      help="do not lowercase (undoes a preset's --lowercase)")
    parser.add_argument("--keep", choices=("val-loss", "train-loss"),
                        help="best weights by validation loss (default) or by the epoch's "
                             "training loss (the tutorials'; allows --val-fraction 0)")


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model (fixed once a run exists)")
    model.add_argument("--cell", choices=("lstm", "gru"))
    model.add_argument("--hidden-size", type=int, metavar="N")
    model.add_argument("--num-layers", "--layers", type=int, metavar="N", dest="num_layers")
    model.add_argument("--embedding-dim", type=int, metavar="N")
    model.add_argument("--dropout", type=float, metavar="P")
    data = parser.add_argument_group("text and batches (fixed once a run exists)")
    _add_regularization_flags(model, data)
    data.add_argument("--tokenizer", choices=("char", "byte", "word"),
                      help="char (default), byte (UTF-8 bytes) or word (words, punctuation and "
                           "whitespace runs)")
    data.add_argument("--encoding", help="text encoding of the corpus files (default utf-8)")
    data.add_argument("--keep-crlf", dest="normalize_newlines", action="store_const", const=False,
                      help="keep CR/CRLF line ends instead of turning them into LF")
    data.add_argument("--keep-gutenberg", dest="strip_gutenberg", action="store_const",
                      const=False, help="keep Project Gutenberg headers and footers")
    data.add_argument("--lowercase", action="store_const", const=True)
    data.add_argument("--val-fraction", type=float, metavar="F",
                      help="last fraction of the text held out for validation (default 0.1)")
    data.add_argument("--seq-len", type=int, metavar="N")
    data.add_argument("--batch-size", type=int, metavar="N")
    data.add_argument("--batching", choices=BATCHINGS,
                      help="stream: contiguous streams, state carried (default); "
                           "sequences: shuffled independent sequences; window, variable-window, "
                           "prefix: the tutorials' windows -> next character (see --window); "
                           "documents: each line/sentence/paragraph on its own (--document-unit)")
    _add_framing_flags(parser, model, data)
    # -- document mode (documents.py) --
    data.add_argument("--document-unit", choices=("line", "sentence", "paragraph"),
                      help="with --batching documents: each line (default), sentence or "
                           "paragraph (blank-line separated) is one sequence, [start] ... [end]")
    # -- word level and punctuation --
    data.add_argument("--min-count", type=int, metavar="N",
                      help="word level: tokens seen fewer than N times become [UNK] (default 1)")
    data.add_argument("--max-vocab", type=int, metavar="N",
                      help="word level: keep the N most frequent tokens, the rest are [UNK] "
                           "(default 0: all)")
    data.add_argument("--strip-punctuation", action="store_const", const=True,
                      help="remove Unicode punctuation from the corpus (letters, digits, symbols "
                           "and whitespace stay)")
    opt = parser.add_argument_group("training")
    opt.add_argument("--optimizer", choices=("adamw", "adam"))
    opt.add_argument("--lr", type=float, metavar="LR")
    opt.add_argument("--weight-decay", type=float, metavar="W")
    opt.add_argument("--schedule", choices=("cosine", "wsd", "constant"),
                     help="after warmup: cosine to --min-lr-ratio over the budget; wsd: the "
                          "peak until the last 20%%, then that cosine; constant")
    opt.add_argument("--warmup-steps", type=int, metavar="N")
    opt.add_argument("--min-lr-ratio", type=float, metavar="R")
    opt.add_argument("--grad-clip", type=float, metavar="NORM")
    opt.add_argument("--max-steps", type=int, metavar="N")
    opt.add_argument("--max-time", type=_duration, metavar="TIME",
                     help="training time budget, e.g. 90s, 10m, 1.5h (default 10m when no "
                          "other limit is given)")
    opt.add_argument("--epochs", type=float, metavar="N")
    opt.add_argument("--eval-every", type=int, metavar="STEPS")
    opt.add_argument("--eval-chars", type=int, metavar="N",
                     help="validation tokens used by each evaluation (default 1,000,000)")
    opt.add_argument("--log-every", type=int, metavar="STEPS")
    opt.add_argument("--seed", type=int)
    opt.add_argument("--device", help="auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    opt.add_argument("--on-divergence", choices=("stop", "rollback"),
                     help="when the loss becomes NaN or explodes: stop (default), or roll back "
                          "to the last checkpoint with half the learning rate (up to 3 times)")
    opt.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"),
                     help="auto: bf16 autocast where the hardware runs it fast, else fp32")
    opt.add_argument("--threads", type=int, metavar="N",
                     help="CPU threads (default 0: as many as there are free cores, followed "
                          "while training; OMP_NUM_THREADS also fixes the count)")


def _add_regularization_flags(model, data) -> None:
    model.add_argument("--locked-dropout", action="store_const", const=True,
                       help="one dropout mask per sequence (the same at every step) between "
                            "layers and on the output")
    model.add_argument("--embedding-dropout", type=float, metavar="P",
                       help="dropout on the embedded inputs (default 0)")
    model.add_argument("--weight-drop", type=float, metavar="P",
                       help="DropConnect on the recurrent weights, AWD-LSTM style (default 0)")
    data.add_argument("--seq-len-jitter", type=float, metavar="F",
                      help="vary the BPTT length of each step in seq-len * (1 +- F), stream "
                           "batching only (default 0)")
    model.add_argument("--tie-weights", action="store_const", const=True,
                       help="share the embedding with the output layer (needs --embedding-dim "
                            "equal to --hidden-size)")


def _run_settings(args: argparse.Namespace) -> dict:
    """The flags given that name a run setting (every flag whose name is a field of
    ModelConfig, DataConfig or TrainConfig: one list, the config's own)."""
    fields = {f.name for section in (ModelConfig, DataConfig, TrainConfig)
              for f in dataclasses.fields(section)}
    return {k: v for k, v in vars(args).items() if k in fields and v is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chargen", description=(
        "Train LSTM/GRU language models on any text and generate from them."))
    parser.add_argument("--version", action="version", version=f"chargen {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="show the full traceback on errors (or set CHARGEN_TRACEBACK=1)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model on text (or --resume a run)")
    train.add_argument("corpus", nargs="*", help="text files, directories, or builtin:python-docs"
                                                 " (the default)")
    train.add_argument("--out", help="run directory (default runs/<corpus name>, never reused)")
    train.add_argument("--resume", metavar="RUN", help="continue a run where it stopped")
    train.add_argument("--preset", help=f"named settings: {', '.join(PRESETS)}")
    tune = train.add_argument_group("fine-tuning")
    tune.add_argument("--init-from", metavar="RUN",
                      help="start from a trained run's weights, model shape and vocabulary "
                           "(learning rate defaults to a quarter of the base run's)")
    tune.add_argument("--extend-vocab", action="store_true",
                      help="add the corpus's characters the base run never saw")
    tune.add_argument("--unknown", choices=("error", "replace"), default="error",
                      help="characters the base run never saw: stop (default) or train them "
                           "as the unknown id")
    tune.add_argument("--freeze-layers", type=int, metavar="K",
                      help="keep the embedding and the first K recurrent layers fixed")
    train.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    train.add_argument("--no-auto", dest="auto", action="store_false",
                       help="no auto-configuration: unset model, dropout and batch settings keep "
                            "chargen's defaults instead of being chosen from the corpus size, "
                            "the time budget and this machine's speed (a --preset is a whole "
                            "recipe: it turns auto-configuration off too)")
    _add_train_flags(train)
    _add_watch_flags(train)

    sample = commands.add_parser("sample", help="generate text from a trained run")
    sample.add_argument("run", help="run directory, or an ONNX export directory")
    sample.add_argument("--prime", help="text to continue (default: a random training slice)")
    sample.add_argument("--length", type=int, default=500, help="tokens to generate (500)")
    sample.add_argument("--temperature", type=float, default=1.0)
    sample.add_argument("--top-k", type=int, default=0, help="keep the K likeliest (0: all)")
    sample.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    sample.add_argument("--num", type=int, default=1, help="samples, generated as one batch")
    sample.add_argument("--seed", type=int)
    sample.add_argument("--greedy", action="store_true", help="always the likeliest token")
    sample.add_argument("--unknown", choices=("error", "replace", "skip"), default="error",
                        help="prompt characters the model never saw: stop with an error "
                             "(default), replace them with the unknown id, or skip them")
    sample.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto",
                        help="auto: bf16 weight copies for large batches or layers where the "
                             "hardware runs bf16 fast; fp32: always float32; int8: int8 copies "
                             "of the large weights (CPU; faster for big models, see README)")
    sample.add_argument("--stop", action="append", default=[], metavar="SEQ",
                        help="end a sample where it produces SEQ (not printed); repeatable, "
                             "e.g. --stop $'\\n\\n'")
    sample.add_argument("--repetition-penalty", type=float, default=1.0, metavar="P",
                        help="discourage characters already in the text (1: off; 1.1-1.3 "
                             "breaks greedy loops)")
    # -- beam search --
    sample.add_argument("--beam", type=int, default=0, metavar="N",
                        help="beam search with N beams for the likeliest continuation, printed "
                             "whole at the end (0: sample; no --temperature/--top-k/--top-p)")
    sample.add_argument("--length-norm", action="store_true",
                        help="with --beam and --stop: rank continuations of different lengths "
                             "by log-probability per token, not in total")
    sample.add_argument("--which", choices=("best", "last"), help="weights of a run: best "
                        "(default) or last")
    sample.add_argument("--interactive", "-i", action="store_true",
                        help="a prompt loop: type text, see it continued (:help lists commands)")
    sample.add_argument("--device", default="cpu")

    # -- ONNX export ------------------------------------------------------------------------
    export = commands.add_parser("export", help="write a run's generator as ONNX (onnxruntime samples it)")
    export.add_argument("run", help="run directory")
    export.add_argument("--format", choices=("onnx",), default="onnx")
    export.add_argument("--out", help="export directory (default RUN/export-onnx; never reused)")
    export.add_argument("--which", choices=("best", "last"), default="best")

    evaluate = commands.add_parser("eval", help="loss of a trained run on some text")
    evaluate.add_argument("run", help="run directory")
    evaluate.add_argument("files", nargs="+", help="text files or directories")
    evaluate.add_argument("--allow-unknown", action="store_true",
                          help="score a text with more than 1%% characters the run never saw "
                               "(as its unknown id) instead of refusing it")

    commands.add_parser("presets", help="list the named settings for train --preset")

    info = commands.add_parser("info", help="settings, size, corpus and progress of a run")
    info.add_argument("run", help="run directory")

    _add_serve_command(commands)

    plot = commands.add_parser("plot", help="PNG of runs' training and validation loss")
    plot.add_argument("runs", nargs="+", metavar="RUN", help="run directories, drawn overlaid")
    plot.add_argument("--out", metavar="FILE",
                      help="the PNG to write (default: loss.png in the first run's directory)")

    demo = commands.add_parser("demo", help="train briefly on the built-in corpus and sample")
    demo.add_argument("--out", help="run directory (default runs/python-docs-N)")
    demo.add_argument("--max-time", type=_duration, metavar="TIME")

    alphabet = commands.add_parser(
        "alphabet", help="tutorial A: how framing the alphabet as features, time steps or padded "
                         "runs changes what an LSTM(32) learns; prints a table")
    alphabet.add_argument("--epochs", type=_positive_int, default=500, help="epochs per model (500)")
    alphabet.add_argument("--seeds", type=_positive_int, default=5, help="models per row (5)")
    alphabet.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from . import api

    if args.resume and (args.corpus or args.preset or args.out or args.init_from):
        raise ChargenError_usage("--resume takes no corpus, --preset, --out or --init-from: the "
                                 "run has them")
    overrides = preset(args.preset) if args.preset else {}
    overrides.update(_run_settings(args))
    from .distributed import leave

    try:
        result = api.train(args.corpus or None, args.out, resume=args.resume, quiet=args.quiet,
                           init_from=args.init_from, extend_vocab=args.extend_vocab,
                           unknown=args.unknown,
                           auto=args.auto and not (args.init_from or args.preset),
                           **overrides)
    except BaseException:
        leave()
        raise
    leave(together=True)
    _report_training(result)
    return 0


def _report_training(result) -> None:
    from .checkpoint import RunDir
    from .progress import loss_unit

    if result.best_val == float("inf") and result.best_train == float("inf"):
        log.info("done: %d steps in %.0f s; no epoch finished, so sampling uses the last "
                 "weights", result.steps, result.elapsed)
    elif result.best_val == float("inf"):  # no validation text
        log.info("done: %d steps in %.0f s; best epoch training loss %.4f at step %d",
                 result.steps, result.elapsed, result.best_train, result.best_train_step)
    else:
        unit = loss_unit(RunDir(result.run_dir).read_config().data.tokenizer)
        log.info("done: %d steps in %.0f s; best validation %.4f nats/%s (%.3f bits/%s) at "
                 "step %d", result.steps, result.elapsed, result.best_val, unit,
                 result.best_bits, unit, result.best_step)
    log.info("run directory: %s  (sample it: chargen sample %s)", result.run_dir, result.run_dir)


def cmd_sample(args: argparse.Namespace) -> int:
    from .config import SampleConfig
    from .onnx_sampler import is_export

    settings = SampleConfig(length=args.length, temperature=args.temperature, top_k=args.top_k,
                            top_p=args.top_p, num=args.num, greedy=args.greedy,
                            seed=args.seed, unknown=args.unknown,
                            precision=args.precision, stop=tuple(args.stop),
                            repetition_penalty=args.repetition_penalty,
                            beam=args.beam, length_norm=args.length_norm).validate()
    if is_export(args.run):
        exported = _load_export_for(args)
        if exported.document_unit:
            _print_units(exported, args.prime or "", vars(settings))
        else:
            _print_samples(exported, args.prime, vars(settings))
        return 0
    from . import api

    model = api.load(args.run, which=args.which or "best", device=args.device)
    if args.interactive:
        from .interactive import Session

        return Session(model, settings).run(first_prime=args.prime)
    prime = args.prime if args.prime is not None else model.random_prime(args.seed)
    if model.document_unit:
        _print_units(model, prime, vars(settings))
        return 0
    _print_samples(model, prime, vars(settings))
    return 0


def _print_units(model, prime: str, settings: dict) -> None:
    """A document run's samples: one whole unit each (the prime and what follows up to [end]),
    one per line; paragraphs separated by a blank line."""
    if settings["num"] == 1:  # streamed as it comes
        _print_samples(model, prime, settings)
        return
    between = "\n" if model.document_unit == "paragraph" else ""
    for i, text in enumerate(model.sample(prime, **settings)):
        sys.stdout.write(f"{between if i else ''}{prime}{text}\n")
    sys.stdout.flush()


# -- ONNX export: sampling from an export runs on onnxruntime, without torch ----------------
def _load_export_for(args: argparse.Namespace):
    from .onnx_sampler import NO_BEAM, NO_PROMPT, load_export

    if args.which is not None:
        raise ChargenError_usage("--which picks a run's weights; an export holds one set: drop "
                                 "--which, or export the run again with --which")
    if args.device != "cpu":
        raise ChargenError_usage("an ONNX export samples on the CPU (onnxruntime): drop --device")
    if args.beam:
        raise ChargenError_usage(NO_BEAM.replace("drop beam", "drop --beam"))
    exported = load_export(args.run)
    if args.prime is None and not exported.document_unit:  # a unit starts at [start]
        raise ChargenError_usage(NO_PROMPT)
    return exported


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_run

    target = export_run(args.run, args.out, which=args.which)
    log.info("exported %s to %s  (sample it: chargen sample %s --prime TEXT)", args.run, target,
             target)
    return 0


def _print_samples(model, prime: str, settings: dict) -> None:
    out = sys.stdout
    if settings["num"] == 1:
        pieces = iter(model.generate(prime, **settings))
        first = next(pieces, "")  # a prompt the model cannot read fails here, before any output
        out.write(prime + first)
        for piece in pieces:
            out.write(piece)
            out.flush()
        out.write("\n")
        return
    for i, text in enumerate(model.sample(prime, **settings), start=1):
        out.write(f"--- sample {i} of {settings['num']} ---\n{prime}{text}\n")
    out.flush()


def cmd_eval(args: argparse.Namespace) -> int:
    from . import api

    result = api.evaluate_text(args.run, args.files, args.allow_unknown)
    unknown = (f"; {result.unknown:,} unknown ({result.unknown_share:.2%})" if result.unknown
               else "")
    if result.unit == "word":  # per word-token, then per character for comparison with char runs
        per_char = result.nats_per_char
        print(f"nats/word-token {result.nats:.4f}  bits/word-token {result.bits:.4f}  "
              f"perplexity {result.perplexity:.3f}  ({result.tokens:,} tokens{unknown}); over the "
              f"{result.characters:,} characters: nats/char {per_char:.4f}  bits/char "
              f"{per_char / math.log(2):.4f}")
        return 0
    print(f"nats/char {result.nats:.4f}  bits/char {result.bits:.4f}  "
          f"perplexity {result.perplexity:.3f}  ({result.tokens:,} tokens{unknown})")
    if result.unknown:
        log.warning("%s of the text's characters were never seen in training and were scored "
                    "as unknown", f"{result.unknown:,}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    import textwrap

    for name, settings in PRESETS.items():
        shown = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in settings.items())
        print(textwrap.fill(f"{name}: {shown or '(the defaults)'}", width=100,
                            subsequent_indent="    ", break_on_hyphens=False))
        if name in PRESET_NOTES:
            print(f"    ({PRESET_NOTES[name]})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import math

    from . import api
    from .progress import format_duration

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
    from . import api

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

    from .experiments import alphabet

    log.info("alphabet: %d models (4 framings x 2 inputs x %d seeds), %d epochs each, batch 1",
             8 * args.seeds, args.seeds, args.epochs)
    result = alphabet.run_experiment(epochs=args.epochs, seeds=args.seeds)
    print(json.dumps(result, indent=2) if args.json else alphabet.format_table(result))
    return 0


# --- chargen serve ----------------------------------------------------------------------
def _add_serve_command(commands) -> None:
    serve = commands.add_parser("serve", help="serve a run over HTTP: streaming API and a "
                                              "web playground")
    serve.add_argument("run", help="run directory")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    limits = serve.add_argument_group("limits")
    limits.add_argument("--max-length", type=int, default=2000, metavar="N",
                        help="most tokens per sample (2000)")
    limits.add_argument("--max-num", type=int, default=16, metavar="N",
                        help="most samples per request (16)")
    limits.add_argument("--max-prompt", type=int, default=10_000, metavar="CHARS",
                        help="longest prompt (10000 characters)")
    limits.add_argument("--max-active", type=int, default=32, metavar="N",
                        help="generations batched together at once (32)")
    limits.add_argument("--queue-size", type=int, default=64, metavar="N",
                        help="generations waiting for a place; more are refused with 503 (64)")
    serve.add_argument("--threads", type=int, metavar="N",
                       help="torch threads for the model (default: one less than torch's "
                            "default, leaving a core to the HTTP side)")
    serve.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto",
                       help="decoder weights: auto (bf16 where the hardware runs it fast, for "
                            "--max-active rows), fp32 (seeded text equals chargen sample's) or "
                            "int8 (stateful runs; window runs stay float)")
    serve.add_argument("--which", choices=("best", "last"), default="best")
    serve.add_argument("--device", default="cpu")


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .serve import ServeLimits, serve
    except ImportError as err:
        raise ChargenError(f"chargen serve needs FastAPI and uvicorn ({err}); install them with "
                           "pip install 'chargen[serve]'") from None
    limits = ServeLimits(max_length=args.max_length, max_num=args.max_num,
                         max_prompt=args.max_prompt, max_active=args.max_active,
                         queue_size=args.queue_size, precision=args.precision).validate()
    serve(args.run, args.host, args.port, limits, which=args.which, device=args.device,
          threads=args.threads)
    return 0
# --- end chargen serve -------------------------------------------------------------------


class ChargenError_usage(ChargenError):  # noqa: N801 - a usage error raised by the CLI itself
    exit_code = 2


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval, "presets": cmd_presets,
            "info": cmd_info, "demo": cmd_demo, "export": cmd_export, "alphabet": cmd_alphabet,
            "serve": cmd_serve}


# -- watching a run: samples during training, TensorBoard, plot ---------------------------


def _add_watch_flags(parser: argparse.ArgumentParser) -> None:
    watch = parser.add_argument_group("watching the run")
    watch.add_argument("--sample-every", type=int, metavar="STEPS",
                       help="write a short sample to samples.jsonl (and show it) every STEPS "
                            "steps (default: at each evaluation; 0: never)")
    watch.add_argument("--sample-length", type=int, metavar="N",
                       help="characters in each such sample (default 200)")
    watch.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None,
                       help="also log to RUN/tensorboard/ (pip install 'chargen[tensorboard]')")


def cmd_plot(args: argparse.Namespace) -> int:
    from .plot import plot_runs

    log.info("wrote %s", plot_runs(args.runs, args.out))
    return 0


COMMANDS["plot"] = cmd_plot


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each message."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _setup_logging(quiet: bool) -> None:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # usage errors and --help: argparse has printed its message
        return int(exit_.code or 0)
    quiet = getattr(args, "quiet", False)
    _setup_logging(quiet)
    show_traceback = args.traceback or os.environ.get("CHARGEN_TRACEBACK") == "1"
    try:
        return _run_command(args, show_traceback)
    finally:
        if argv is None:  # the process is exiting: a late Ctrl-C must not interrupt the
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # atexit handlers with a traceback


def _run_command(args: argparse.Namespace, show_traceback: bool) -> int:
    try:
        return COMMANDS[args.command](args)
    except ChargenError as err:
        if show_traceback:
            raise
        print(f"chargen: error: {err}", file=sys.stderr)
        return err.exit_code
    except (OSError, MemoryError) as err:
        if show_traceback:
            raise
        print(f"chargen: error: {_describe(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("chargen: interrupted", file=sys.stderr)
        return 130


def _describe(err: BaseException) -> str:
    if isinstance(err, MemoryError):
        return ("out of memory; use a smaller model, batch or file, or close other programs "
                "(CHARGEN_MAX_MEMORY sets what chargen plans for)")
    return str(err) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
