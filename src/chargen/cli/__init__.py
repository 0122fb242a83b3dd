"""The command line: a thin layer over chargen.api. torch is imported only when a command
runs, so `chargen --help` stays fast."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from ..errors import ChargenError
from .commands import cmd_eval, cmd_export, cmd_sample, cmd_train
from .more import cmd_alphabet, cmd_demo, cmd_info, cmd_plot, cmd_presets, cmd_serve
from .parser import build_parser

__all__ = ["build_parser", "main"]

log = logging.getLogger("chargen")

COMMANDS = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval, "presets": cmd_presets,
            "info": cmd_info, "demo": cmd_demo, "export": cmd_export, "alphabet": cmd_alphabet,
            "serve": cmd_serve, "plot": cmd_plot}


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
