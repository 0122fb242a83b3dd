"""The argument parser: the commands, their own arguments, and the settings' flags made from the
config dataclasses (flags.py)."""

from __future__ import annotations

import argparse

from .. import __version__
from ..config import PRESETS, AdaptConfig, DataConfig, ModelConfig, SampleConfig, ServeLimits, TrainConfig
from .flags import add_setting_flags, duration, positive_int


class Parser(argparse.ArgumentParser):
    """argparse with chargen's one-line error format."""

    def error(self, message: str):
        self.exit(2, f"chargen: error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="chargen", description=(
        "Train LSTM/GRU language models on any text and generate from them."))
    parser.add_argument("--version", action="version", version=f"chargen {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="show the full traceback on errors (or set CHARGEN_TRACEBACK=1)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(commands)
    _add_sample(commands)
    _add_export_and_eval(commands)
    _add_serve(commands)
    _add_small_commands(commands)
    return parser


def _add_train(commands) -> None:
    train = commands.add_parser("train", help="train a model on text (or --resume a run)")
    train.add_argument("corpus", nargs="*", help="text files, directories, or builtin:python-docs"
                                                 " (the default)")
    train.add_argument("--out", help="run directory (default runs/<corpus name>, never reused)")
    train.add_argument("--resume", metavar="RUN", help="continue a run where it stopped")
    train.add_argument("--more", metavar="TIME", type=duration, help=(
        "with --resume: train this much longer, e.g. 5m (--max-time counts from the run's "
        "start); the schedule stretches over the new total"))
    train.add_argument("--preset", help=f"named settings: {', '.join(PRESETS)}")
    train.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    train.add_argument("--no-auto", dest="auto", action="store_false",
                       help="no auto-configuration: unset model, dropout and batch settings keep "
                            "chargen's defaults instead of being chosen from the corpus size, "
                            "the time budget and this machine's speed (a --preset is a whole "
                            "recipe: it turns auto-configuration off too)")
    tune = train.add_argument_group("fine-tuning")
    tune.add_argument("--init-from", metavar="RUN",
                      help="start from a trained run's weights, model shape and vocabulary "
                           "(learning rate defaults to a quarter of the base run's)")
    tune.add_argument("--extend-vocab", action=argparse.BooleanOptionalAction, default=None,
                      help="add the corpus's characters the base run never saw (the default "
                           "where the base has an embedding input; --no-extend-vocab refuses "
                           "them)")
    tune.add_argument("--unknown", choices=("error", "replace"), default="error",
                      help="characters the base run never saw: stop (default) or train them "
                           "as the unknown id")
    groups = {"fine-tuning": tune,
              "watching the run": train.add_argument_group("watching the run")}
    add_setting_flags(train.add_argument_group("model (fixed once a run exists)"), ModelConfig)
    add_setting_flags(train.add_argument_group("text and batches (fixed once a run exists)"),
                      DataConfig)
    add_setting_flags(train.add_argument_group("training"), TrainConfig, groups)


def _add_sample(commands) -> None:
    sample = commands.add_parser("sample", help="generate text from a trained run")
    sample.add_argument("run", help="run directory, or an ONNX export directory")
    sample.add_argument("--prime", help="text to continue (default: a random training slice)")
    add_setting_flags(sample, SampleConfig)
    adapting = sample.add_argument_group("adapting to a document")
    adapting.add_argument("--adapt", metavar="FILE", help=(
        "first adapt a copy of the model to this text (as --dynamic evaluation reads it), "
        "then sample in its style; the run is not changed"))
    add_setting_flags(adapting, AdaptConfig)
    sample.add_argument("--which", choices=("best", "last"), help="weights of a run: best "
                        "(default) or last")
    sample.add_argument("--interactive", "-i", action="store_true",
                        help="a prompt loop: type text, see it continued (:help lists commands)")
    sample.add_argument("--device", default="cpu")


def _add_export_and_eval(commands) -> None:
    export = commands.add_parser("export", help="write a run's generator as ONNX (onnxruntime "
                                                "samples it)")
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
    evaluate.add_argument("--dynamic", action="store_true",
                          help="also the loss while a copy of the weights adapts to the text as "
                               "it reads it (dynamic evaluation; the run is not changed)")
    add_setting_flags(evaluate.add_argument_group("adapting (with --dynamic)"), AdaptConfig)


def _add_serve(commands) -> None:
    serve = commands.add_parser("serve", help="serve a run over HTTP: streaming API and a "
                                              "web playground")
    serve.add_argument("run", help="run directory")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    add_setting_flags(serve, ServeLimits, {"limits": serve.add_argument_group("limits")})
    serve.add_argument("--threads", type=int, metavar="N",
                       help="torch threads for the model (default: one less than torch's "
                            "default, leaving a core to the HTTP side)")
    serve.add_argument("--which", choices=("best", "last"), default="best")
    serve.add_argument("--device", default="cpu")


def _add_small_commands(commands) -> None:
    commands.add_parser("presets", help="list the named settings for train --preset")
    info = commands.add_parser("info", help="settings, size, corpus and progress of a run")
    info.add_argument("run", help="run directory")
    plot = commands.add_parser("plot", help="PNG of runs' training and validation loss")
    plot.add_argument("runs", nargs="+", metavar="RUN", help="run directories, drawn overlaid")
    plot.add_argument("--out", metavar="FILE",
                      help="the PNG to write (default: loss.png in the first run's directory)")
    demo = commands.add_parser("demo", help="train briefly on the built-in corpus and sample")
    demo.add_argument("--out", help="run directory (default runs/python-docs-N)")
    demo.add_argument("--max-time", type=duration, metavar="TIME")
    alphabet = commands.add_parser(
        "alphabet", help="tutorial A: how framing the alphabet as features, time steps or padded "
                         "runs changes what an LSTM(32) learns; prints a table")
    alphabet.add_argument("--epochs", type=positive_int, default=500, help="epochs per model (500)")
    alphabet.add_argument("--seeds", type=positive_int, default=5, help="models per row (5)")
    alphabet.add_argument("--json", action="store_true", help="print the results as JSON")
