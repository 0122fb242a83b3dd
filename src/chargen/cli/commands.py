"""The commands that train, sample, export and evaluate: thin layers over chargen.api (imported
when a command runs, so that `chargen --help` never imports torch)."""

from __future__ import annotations

import argparse
import logging
import math
import sys

from ..config import AdaptConfig, DataConfig, ModelConfig, SampleConfig, TrainConfig, preset
from ..errors import UsageError
from .flags import given_settings

log = logging.getLogger("chargen")


def cmd_train(args: argparse.Namespace) -> int:
    from .. import api

    if args.resume and (args.corpus or args.preset or args.out or args.init_from):
        raise UsageError("--resume takes no corpus, --preset, --out or --init-from: the "
                                 "run has them")
    if args.more is not None and not args.resume:
        raise UsageError("--more continues a run: give --resume RUN (a new run takes --max-time)")
    overrides = preset(args.preset) if args.preset else {}
    overrides.update(given_settings(args, ModelConfig, DataConfig, TrainConfig))
    from ..distributed import leave

    try:
        result = api.train(args.corpus or None, args.out, resume=args.resume, quiet=args.quiet,
                           init_from=args.init_from, extend_vocab=args.extend_vocab,
                           unknown=args.unknown, more=args.more,
                           auto=args.auto and not (args.init_from or args.preset),
                           **overrides)
    except BaseException:
        leave()
        raise
    leave(together=True)
    _report_training(result)
    return 0


def _report_training(result) -> None:
    from ..checkpoint import RunDir
    from ..progress import loss_unit

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
    from ..onnx_sampler import is_export

    settings = SampleConfig(**given_settings(args, SampleConfig)).validate()
    adapt = given_settings(args, AdaptConfig)
    if adapt and args.adapt is None:
        raise UsageError(f"{_flags(adapt)} apply only with --adapt FILE")
    if is_export(args.run):
        if args.adapt is not None:
            raise UsageError("--adapt changes a copy of a run's weights; an ONNX export's are "
                             "fixed: sample the run itself")
        exported = _load_export_for(args)
        if exported.document_unit:
            _print_units(exported, args.prime or "", vars(settings))
        else:
            _print_samples(exported, args.prime, vars(settings))
        return 0
    from .. import api

    model = api.load(args.run, which=args.which or "best", device=args.device)
    if args.adapt is not None:
        from ..language_model import read_text

        model = model.adapt(read_text(model, args.adapt), **adapt)
    if args.interactive:
        from ..interactive import Session

        return Session(model, settings).run(first_prime=args.prime)
    prime = args.prime
    if prime is None:  # a random slice of the training text, a different one per sample
        primes = model.random_primes(settings.num, args.seed)
        one = settings.num == 1 or settings.beam or model.document_unit
        prime = primes[0] if one else primes
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
    from ..onnx_sampler import NO_BEAM, NO_PROMPT, load_export

    if args.which is not None:
        raise UsageError("--which picks a run's weights; an export holds one set: drop "
                                 "--which, or export the run again with --which")
    if args.device != "cpu":
        raise UsageError("an ONNX export samples on the CPU (onnxruntime): drop --device")
    if args.beam:
        raise UsageError(NO_BEAM.replace("drop beam", "drop --beam"))
    exported = load_export(args.run)
    if args.prime is None and not exported.document_unit:  # a unit starts at [start]
        raise UsageError(NO_PROMPT)
    return exported


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import export_run

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
    primes = [prime] * settings["num"] if isinstance(prime, str) else prime
    for i, text in enumerate(model.sample(prime, **settings)):
        out.flush()  # the header (stderr) after the sample before it, in a terminal
        sys.stderr.write(f"--- sample {i + 1} of {settings['num']} ---\n")
        out.write(f"{primes[i]}{text}\n")
    out.flush()


def cmd_eval(args: argparse.Namespace) -> int:
    from .. import api
    from ..language_model import read_text

    adapt = given_settings(args, AdaptConfig)
    if adapt and not args.dynamic:
        raise UsageError(f"{_flags(adapt)} apply only with --dynamic")
    model = api.load(args.run)
    text = read_text(model, args.files)
    result = model.evaluate(text, args.allow_unknown)
    _print_evaluation(result, "static:  " if args.dynamic else "")
    if args.dynamic:
        settings = AdaptConfig(**adapt).validate()
        _print_evaluation(model.evaluate(text, True, True, **adapt), "dynamic: ")
        log.info("dynamic: --adapt-lr %g --adapt-decay %g --adapt-segment %d (the run's files "
                 "are unchanged)", settings.adapt_lr, settings.adapt_decay, settings.adapt_segment)
    if result.unknown:
        log.warning("%s of the text's characters were never seen in training and were scored "
                    "as unknown", f"{result.unknown:,}")
    return 0


def _print_evaluation(result, label: str) -> None:
    unknown = (f"; {result.unknown:,} unknown ({result.unknown_share:.2%})" if result.unknown
               else "")
    if result.unit == "word":  # per word-token, then per character for comparison with char runs
        per_char = result.nats_per_char
        print(f"{label}nats/word-token {result.nats:.4f}  bits/word-token {result.bits:.4f}  "
              f"perplexity {result.perplexity:.3f}  ({result.tokens:,} tokens{unknown}); over the "
              f"{result.characters:,} characters: nats/char {per_char:.4f}  bits/char "
              f"{per_char / math.log(2):.4f}")
        return
    print(f"{label}nats/char {result.nats:.4f}  bits/char {result.bits:.4f}  "
          f"perplexity {result.perplexity:.3f}  ({result.tokens:,} tokens{unknown})")


def _flags(settings: dict) -> str:
    return ", ".join("--" + name.replace("_", "-") for name in sorted(settings))
