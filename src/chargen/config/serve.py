"""The server's limits (`chargen serve`), declared once with their command-line help."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import ConfigError
from .checks import check_types, check_whole
from .fields import setting

LIMITS = "limits"


@dataclass(frozen=True)
class ServeLimits:
    max_length: int = setting(2000, metavar="N", group=LIMITS, help="most tokens per sample (2000)")
    max_num: int = setting(16, metavar="N", group=LIMITS, help="most samples per request (16)")
    max_prompt: int = setting(10_000, metavar="CHARS", group=LIMITS,
                              help="longest prompt (10000 characters)")
    max_active: int = setting(32, metavar="N", group=LIMITS,
                              help="generations batched together at once (32)")
    queue_size: int = setting(64, metavar="N", group=LIMITS, help=(
        "generations waiting for a place; more are refused with 503 (64)"))
    api_key: str | None = setting(None, metavar="KEY", help=(
        "require this key (as OpenAI clients send it: Authorization: Bearer KEY) on every "
        "endpoint but /health; default: the CHARGEN_API_KEY environment variable, else none"))
    precision: str = setting("auto", choices=("auto", "fp32", "int8"), help=(
        "decoder weights: auto (bf16 where the hardware runs it fast, for --max-active rows), "
        "fp32 (seeded text equals chargen sample's) or int8 (stateful runs; window runs stay "
        "float)"))

    def validate(self) -> ServeLimits:
        check_types(self)
        for name in ("max_length", "max_num", "max_prompt", "max_active"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        check_whole("max_num", self.max_num, limit=4096)  # SampleConfig's own limit
        check_whole("max_active", self.max_active, limit=100_000)
        check_whole("queue_size", self.queue_size, limit=1_000_000)
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("--api-key must not be empty (leave it out for no key)")
        return self

    def shown(self) -> dict:
        """The limits as /info shows them: the key is never sent back."""
        shown = asdict(self)
        shown["api_key"] = self.api_key is not None
        return shown
