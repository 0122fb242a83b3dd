"""`chargen sample RUN --interactive`: a prompt loop. Each line typed is a prime whose
continuation streams to stdout; lines starting with ':' change the settings."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable

from .config import SampleConfig
from .errors import ChargenError, TokenizerError

HELP = """\
Type some text and press Enter: the model continues it. Commands:
  :temp T       sampling temperature (0: always the likeliest character)
  :length N     characters per continuation
  :top-k K      keep the K likeliest characters (0: all)
  :top-p P      nucleus sampling mass, in (0, 1]
  :seed N       fixed seed, the same continuation for the same text (:seed none: random)
  :unknown M    characters the model never saw: error, replace or skip
  :penalty P    repetition penalty (1: off; 1.1-1.3 breaks loops)
  :stop SEQ     end a continuation where it produces SEQ (\\n for a newline; :stop none: no stop)
  :beam N       the likeliest continuation by beam search over N beams (0: sample)
  :settings     show the current settings
  :help         this text
  :quit         leave (so does Ctrl-D); Ctrl-C stops a continuation
A prime that starts with ':' is typed with two, e.g. '::-)'."""

# command -> (SampleConfig field, parser of the argument)
SETTINGS: dict[str, tuple[str, Callable[[str], object]]] = {
    "temp": ("temperature", float), "temperature": ("temperature", float),
    "length": ("length", int), "top-k": ("top_k", int), "top-p": ("top_p", float),
    "seed": ("seed", lambda text: None if text.lower() == "none" else int(text)),
    "unknown": ("unknown", str),
    "penalty": ("repetition_penalty", float),
    "stop": ("stop", lambda text: () if text.lower() == "none" else
             (text.encode("latin-1", "backslashreplace").decode("unicode_escape"),)),
    "beam": ("beam", int),
}
SHOWN = ("temperature", "length", "top_k", "top_p", "seed", "unknown", "repetition_penalty",
         "stop", "beam")


class Session:
    """The loop over one loaded model (an api.LanguageModel); settings change as it runs."""

    def __init__(self, model, settings: SampleConfig, out=None, err=None):
        if settings.num != 1:
            raise ChargenError("--interactive generates one sample at a time; drop --num")
        self.model, self.settings = model, settings
        self.out, self.err = out or sys.stdout, err or sys.stderr

    def run(self, first_prime: str | None = None, read_line: Callable[[str], str] = input) -> int:
        """Until :quit or end of input (Ctrl-D); -> the exit status (0)."""
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401 - line editing and history for input()
        self.err.write("Type some text to continue it; :help lists the commands, Ctrl-D quits.\n")
        if first_prime:
            self.continue_text(first_prime)
        while True:
            try:
                line = read_line("> ")
            except EOFError:
                self.out.write("\n")
                return 0
            except KeyboardInterrupt:  # at the prompt: a fresh line, as in a shell
                self.out.write("\n")
                continue
            if not self.handle(line):
                return 0

    def handle(self, line: str) -> bool:
        """One line typed; -> False to leave."""
        if line.startswith(":") and not line.startswith("::"):
            return self.command(line[1:].strip())
        prime = line[1:] if line.startswith("::") else line
        if prime:
            self.continue_text(prime)
        return True

    def command(self, text: str) -> bool:
        name, _, argument = text.partition(" ")
        argument = argument.strip()
        if name in ("q", "quit", "exit"):
            return False
        if name in ("h", "help", "?"):
            self.err.write(HELP + "\n")
        elif name == "settings":
            self._show_settings()
        elif name in SETTINGS:
            self._set(name, *SETTINGS[name], argument)
        else:
            self.err.write(f"unknown command :{name}; :help lists the commands\n")
        return True

    def _set(self, name: str, field: str, parse: Callable[[str], object], argument: str) -> None:
        try:
            value = parse(argument)
            self.settings = dataclasses.replace(self.settings, **{field: value}).validate()
        except ValueError:
            self.err.write(f":{name} needs a value, e.g. {_EXAMPLES[field]} (got {argument!r})\n")
            return
        except ChargenError as err:
            self.err.write(f"{err}\n")
            return
        self.err.write(f"{field} = {value}\n")

    def _show_settings(self) -> None:
        shown = "  ".join(f"{field}={getattr(self.settings, field)}" for field in SHOWN)
        self.err.write(shown + "\n")

    def continue_text(self, prime: str) -> None:
        """Stream the continuation of `prime`; Ctrl-C stops it and returns to the prompt."""
        try:
            self.model.encode_prompt(prime, self.settings.unknown)
        except ChargenError as err:
            hint = " (here: :unknown skip or :unknown replace)" if isinstance(err, TokenizerError) else ""
            self.err.write(f"{err}{hint}\n")
            return
        self.out.write(prime)
        try:
            for piece in self.model.generate(prime, **vars(self.settings)):
                self.out.write(piece)
                self.out.flush()
        except KeyboardInterrupt:
            self.out.write("\n[stopped]")
        self.out.write("\n")
        self.out.flush()


_EXAMPLES = {"temperature": ":temp 0.5", "length": ":length 300", "top_k": ":top-k 10",
             "top_p": ":top-p 0.9", "seed": ":seed 1", "unknown": ":unknown skip",
             "repetition_penalty": ":penalty 1.2", "stop": ":stop \\n", "beam": ":beam 4"}
