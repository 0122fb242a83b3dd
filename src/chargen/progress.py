"""Training progress on stderr: a live tqdm bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm

log = logging.getLogger("chargen")


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    def __init__(self, total_steps: int | None, max_time: float | None, step: int,
                 elapsed: float, quiet: bool = False):
        self.total_steps, self.max_time, self.quiet = total_steps, max_time, quiet
        self.start_step, self.start_elapsed = step, elapsed
        self.last_val = ""
        self.bar = None
        if not quiet and sys.stderr.isatty():
            self.bar = tqdm(total=total_steps, initial=step, unit="step", file=sys.stderr,
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

    def update(self, step: int, elapsed: float, loss: float, chars_per_s: float) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix_str(f"loss {loss:.3f}{self.last_val} {chars_per_s:,.0f} ch/s "
                                     f"eta {self._eta(step, elapsed)}")
            return
        total = f"/{self.total_steps}" if self.total_steps else ""
        log.info("step %d%s  loss %.4f%s  %s chars/s  elapsed %s  eta %s", step, total, loss,
                 self.last_val, f"{chars_per_s:,.0f}", format_duration(elapsed),
                 self._eta(step, elapsed))

    def validation(self, step: int, nats: float, bits: float, improved: bool) -> None:
        self.last_val = f"  val {nats:.4f} ({bits:.3f} bpc)"
        if self.quiet:
            return
        mark = " (best)" if improved else ""
        message = f"step {step}: validation {nats:.4f} nats/char, {bits:.3f} bits/char{mark}"
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
