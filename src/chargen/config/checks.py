"""The validators every settings dataclass uses, and the parsers of durations and sizes: one
place that says what a valid value is, for flags, the API, config files and the server alike."""

from __future__ import annotations

import math
import re
from dataclasses import fields
from typing import Any

from ..errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h|hr)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '1.5h' -> seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise ConfigError(f"--max-time must be a duration like 90s, 10m or 1.5h (got {text!r})")
    unit = match.group(2).lower() if match.group(2) else None
    seconds = float(match.group(1)) * _UNIT_SECONDS[unit]
    if seconds <= 0:
        raise ConfigError(f"--max-time must be more than zero (got {text!r})")
    return seconds


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


# Seeds go to torch's generators, which take a signed 64-bit integer.
SEED_LIMIT = 2**63 - 1
# Temperature and repetition penalty divide or multiply float32 logits: inside this range no
# row can overflow to inf or underflow to a uniform draw (which would be a silent wrong result).
SCALE_RANGE = (1e-3, 1e3)


def check_types(settings: Any) -> None:
    """Every field of a settings dataclass holds its annotated type: whole numbers where the
    field is an int (64.0 is refused), finite numbers where it is a float, true/false, text.
    One pass for flags, the API, config files and the server alike."""
    for name, kind in _field_types(type(settings)).items():
        value = getattr(settings, name)
        optional = kind.endswith(" | None")
        if optional and value is None:
            continue
        problem = _type_problem(kind.removesuffix(" | None"), value)
        if problem:
            raise ConfigError(f"{flag_name(name)} must be {problem} (got {value!r})")


_TYPE_CACHE: dict[type, dict[str, str]] = {}


def _field_types(cls: type) -> dict[str, str]:
    if cls not in _TYPE_CACHE:  # annotations are strings here (from __future__ import annotations)
        _TYPE_CACHE[cls] = {f.name: str(f.type) for f in fields(cls)}
    return _TYPE_CACHE[cls]


def _type_problem(kind: str, value: Any) -> str | None:
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        return "a whole number"
    if kind == "float" and not is_number(value):
        return "a finite number"
    if kind == "bool" and not isinstance(value, bool):
        return "true or false"
    if kind == "str" and not isinstance(value, str):
        return "text"
    if kind.startswith("tuple[str") and not (isinstance(value, (tuple, list))
                                             and all(isinstance(v, str) for v in value)):
        return "a list of text"
    return None


def check_encoding(name: Any) -> None:
    """A codec that turns bytes into text (rot13 and base64 are codecs, but not text ones)."""
    try:
        "x".encode(name)  # an empty string would pass: Python skips the codec for it
    except UnicodeError:
        pass
    except (LookupError, TypeError):
        raise ConfigError(f"--encoding {name!r} is not a text encoding Python knows; use one such "
                          "as utf-8, utf-16, latin-1 or cp1252") from None


def within(name: str, value: Any, low: float, high: float, hint: str = "") -> None:
    if not is_number(value) or not low <= value <= high:
        hint = f"; {hint}" if hint else ""
        raise ConfigError(f"{flag_name(name)} must be from {low:g} to {high:g} (got {value}){hint}")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{flag_name(name)} must be one of {', '.join(choices)} (got {value!r})")


def finite(name: str, value: Any) -> None:
    if not is_number(value):
        raise ConfigError(f"{flag_name(name)} must be a finite number (got {value!r})")


def positive(name: str, value: Any, limit: float | None = None) -> None:
    finite(name, value)
    if value <= 0:
        raise ConfigError(f"{flag_name(name)} must be more than zero (got {value})")
    if limit is not None and value > limit:
        raise ConfigError(f"{flag_name(name)} is too large (got {value}, at most {limit:g})")


def check_whole(name: str, value: Any, limit: int) -> None:
    """A whole number from 0 to `limit`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise ConfigError(f"{flag_name(name)} must be a whole number from 0 to {limit} (got {value!r})")


def non_negative(name: str, value: Any) -> None:
    finite(name, value)
    if value < 0:
        raise ConfigError(f"{flag_name(name)} must be zero or more (got {value})")


def fraction(name: str, value: Any, upper_open=False, lower_open=False) -> None:
    ok = is_number(value) and (value > 0 if lower_open else value >= 0)
    ok = ok and (value < 1 if upper_open else value <= 1)
    if not ok:
        low, high = "(" if lower_open else "[", ")" if upper_open else "]"
        raise ConfigError(f"{flag_name(name)} must be in {low}0, 1{high} (got {value})")


_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text: str, name: str = "size") -> int:
    """'512M', '2G', '1.5GB', '1000' -> bytes."""
    match = _SIZE.match(str(text))
    if not match:
        raise ConfigError(f"{name} must be a size like 512M or 2G (got {text!r})")
    power = " kmgt".index(match.group(2).lower() or " ")
    return int(float(match.group(1)) * 1024**power)
