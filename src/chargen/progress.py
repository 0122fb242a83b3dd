"""Training progress on stderr: a live tqdm bar on a terminal, a progress widget in a notebook,
plain lines otherwise (logs, CI)."""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import sys
from contextlib import contextmanager

from tqdm import tqdm

log = logging.getLogger("chargen")


@contextmanager
def shown(quiet: bool):
    """chargen's progress lines on stderr for the length of an API call, when the caller has
    configured no logging (a script or a notebook): without this they would go nowhere."""
    if quiet or log.handlers or logging.getLogger().handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def shows_progress(function):
    """Decorates an API function that takes `quiet`: its progress is shown unless quiet."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with shown(kwargs.get("quiet", False)):
            return function(*args, **kwargs)
    return wrapper


def in_notebook() -> bool:
    """Running in a Jupyter kernel (its stderr is no terminal, but it shows widgets)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def live_terminal() -> bool:
    """stderr is a terminal with a width: a pseudo-terminal without a size (some CI runners,
    `script`, docker exec) would draw a bar zero columns wide, which shows nothing."""
    if not sys.stderr.isatty():
        return False
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns > 0
    except (OSError, ValueError):
        return False


def has_widgets() -> bool:
    """tqdm's notebook bar needs ipywidgets; without them it warns and draws text."""
    return importlib.util.find_spec("ipywidgets") is not None


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def loss_unit(tokenizer_kind: str) -> str:
    return "word-token" if tokenizer_kind == "word" else "char"


class Progress:
    def __init__(self, total_steps: int | None, max_time: float | None, step: int,
                 elapsed: float, quiet: bool = False, unit: str = "char",
                 steps_per_epoch: int | None = None):
        self.total_steps, self.max_time, self.quiet = total_steps, max_time, quiet
        self.unit = unit  # what the loss is per: char, or word-token for a word-level run
        self.steps_per_epoch = steps_per_epoch
        self.start_step, self.start_elapsed = step, elapsed
        self.last_val = ""
        self.bar = None
        if not quiet and (live_terminal() or in_notebook()):
            from tqdm.notebook import tqdm as widget

            bar = widget if in_notebook() and has_widgets() else tqdm
            self.bar = bar(total=total_steps, initial=step, unit="step", file=sys.stderr,
                           dynamic_ncols=True, leave=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False

    def _eta(self, step: int, elapsed: float) -> str:
        etas = []
        if self.max_time:
            etas.append(self.max_time - elapsed)
        done = step - self.start_step
        if self.total_steps and done > 0:
            etas.append((self.total_steps - step) * (elapsed - self.start_elapsed) / done)
        return format_duration(min(etas)) if etas else "?"

    def end_at(self, share: float) -> None:
        """The run now ends at this share of its budget (a plateau brought the decay forward)."""
        if self.max_time:
            self.max_time *= share
        if self.total_steps:
            self.total_steps = round(self.total_steps * share)
            if self.bar is not None:
                self.bar.total = self.total_steps

    def _epoch(self, step: int) -> str:
        return f"epoch {step / self.steps_per_epoch:.2f}" if self.steps_per_epoch else ""

    def update(self, step: int, elapsed: float, loss: float, chars_per_s: float) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix_str(f"{self._epoch(step)} loss {loss:.3f}{self.last_val} "
                                     f"{chars_per_s:,.0f} ch/s eta {self._eta(step, elapsed)}")
            return
        total = f"/{self.total_steps}" if self.total_steps else ""
        log.info("step %d%s  %s  loss %.4f%s  %s chars/s  elapsed %s  eta %s", step, total,
                 self._epoch(step), loss, self.last_val, f"{chars_per_s:,.0f}",
                 format_duration(elapsed), self._eta(step, elapsed))

    def validation(self, step: int, nats: float, bits: float, improved: bool) -> None:
        self.last_val = f"  val {nats:.4f} ({bits:.3f} bpc)"
        if self.quiet:
            return
        mark = " (best)" if improved else ""
        self._show(f"step {step}: validation {nats:.4f} nats/{self.unit}, {bits:.3f} "
                   f"bits/{self.unit}{mark}")

    def sample(self, step: int, text: str) -> None:
        """A sample generated during training, its lines marked off from the log lines."""
        if not self.quiet:
            lines = "\n".join("  | " + line for line in text.splitlines())
            self._show(f"step {step}: sample\n{lines}")

    def _show(self, message: str) -> None:
        """A message above the live bar on a terminal, a log line otherwise."""
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            log.info(message)

    def epoch(self, epoch: int, loss: float, seconds: float, saved: bool) -> None:
        if self.quiet:
            return
        mark = " (best, saved)" if saved else ""
        message = f"epoch {epoch}: loss {loss:.4f}, {seconds:.1f} s{mark}"
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            log.info(message)
