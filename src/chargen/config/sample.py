"""The settings of one generation request, for every consumer (API, CLI, interactive mode,
server, ONNX export), each declared once with its command-line help."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .checks import (
    SCALE_RANGE,
    SEED_LIMIT,
    check_types,
    check_whole,
    choice,
    is_number,
    non_negative,
    positive,
    within,
)
from .fields import choices_of, setting


@dataclass(frozen=True)
class SampleConfig:
    length: int = setting(500, metavar="N", help="tokens to generate (500)")
    temperature: float = setting(1.0, metavar="T", help="0 always takes the likeliest token")
    top_k: int = setting(0, metavar="K", help="keep the K likeliest (0: all)")
    top_p: float = setting(1.0, metavar="P", help="nucleus sampling mass")
    num: int = setting(1, metavar="N", help="samples, generated as one batch")
    greedy: bool = setting(False, switches={"--greedy": (True, "always the likeliest token")})
    seed: int | None = setting(None)
    unknown: str = setting("error", choices=("error", "replace", "skip"), help=(
        "prompt characters the model never saw: stop with an error (default), replace them "
        "with the unknown id, or skip them"))
    precision: str = setting("auto", choices=("auto", "fp32", "int8"), help=(
        "auto: bf16 weight copies for large batches or layers where the hardware runs bf16 "
        "fast; fp32: always float32; int8: int8 copies of the large weights (CPU; faster for "
        "big models, see README)"))
    stop: tuple[str, ...] = setting((), metavar="SEQ", help=(
        "end a sample where it produces SEQ (not printed); repeatable, e.g. --stop $'\\n\\n'"))
    repetition_penalty: float = setting(1.0, metavar="P", help=(
        "discourage characters already in the text (1: off; 1.1-1.3 breaks greedy loops)"))
    # -- beam search --
    beam: int = setting(0, metavar="N", help=(
        "beam search with N beams for the likeliest continuation, printed whole at the end "
        "(0: sample; no --temperature/--top-k/--top-p)"))
    length_norm: bool = setting(False, switches={"--length-norm": (True, (
        "with --beam and --stop: rank continuations of different lengths by log-probability "
        "per token, not in total"))})

    def validate(self) -> SampleConfig:
        check_types(self)
        self._validate_beam()
        within("repetition_penalty", self.repetition_penalty, *SCALE_RANGE,
               hint="1 means none, 1.2 is a usual value")
        for name in ("unknown", "precision"):
            choice(name, getattr(self, name), choices_of(SampleConfig, name))
        non_negative("length", self.length)
        non_negative("top_k", self.top_k)
        positive("num", self.num, limit=4096)
        if self.seed is not None:
            check_whole("seed", self.seed, limit=SEED_LIMIT)
        if self.temperature != 0:
            within("temperature", self.temperature, *SCALE_RANGE, hint="0 means greedy")
        if not is_number(self.top_p) or not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p must be in (0, 1] (got {self.top_p})")
        return self

    def _validate_beam(self) -> None:
        non_negative("beam", self.beam)
        if not isinstance(self.beam, int) or self.beam > 1024:
            raise ConfigError(f"--beam must be a whole number up to 1024 (got {self.beam})")
        if not self.beam:
            return
        sampling = [flag for flag, is_set in (
            ("--temperature", self.temperature != 1.0), ("--top-k", self.top_k != 0),
            ("--top-p", self.top_p != 1.0), ("--greedy", self.greedy)) if is_set]
        if sampling:
            raise ConfigError(f"--beam searches for the likeliest text and takes no sampling "
                              f"setting: drop {', '.join(sampling)}")
        if self.num > self.beam:
            raise ConfigError(f"--num {self.num} is more than --beam {self.beam}: beam search "
                              "keeps at most --beam continuations")
