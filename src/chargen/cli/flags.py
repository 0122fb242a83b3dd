"""Command-line flags made from the settings dataclasses' field metadata (config/fields.py):
each setting is declared once, with its help, choices and metavar, where it lives."""

from __future__ import annotations

import argparse
from dataclasses import fields

from ..config import parse_duration
from ..errors import ChargenError


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ChargenError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--max-time ")) from None


def positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


PARSERS = {"int": int, "float": float, "str": str, "duration": duration}


def add_setting_flags(parser, cls: type, groups: dict | None = None, skip: tuple = ()) -> None:
    """A flag for each field of `cls` that has one, in the group its metadata names (from
    `groups`, else `parser`). Nothing given leaves the dest None: the dataclass's default."""
    groups = groups or {}
    for item in fields(cls):
        meta = item.metadata
        if not meta.get("flag") or item.name in skip:
            continue
        target = groups.get(meta["group"], parser)
        if meta["switches"]:
            for flag, (const, text) in meta["switches"].items():
                target.add_argument(flag, dest=item.name, action="store_const", const=const,
                                    help=text)
            continue
        options = {"dest": item.name, "help": meta["help"] or None}
        if meta["choices"]:
            options["choices"] = meta["choices"]
        elif meta["metavar"]:
            options["metavar"] = meta["metavar"]
        kind = str(item.type).removesuffix(" | None")
        if kind.startswith("tuple"):
            options["action"] = "append"  # repeatable: the values in order
        else:
            options["type"] = PARSERS[meta["parse"] or kind]
        target.add_argument("--" + item.name.replace("_", "-"), *meta["aliases"], **options)


def given_settings(args: argparse.Namespace, *classes: type) -> dict:
    """The flags given that name a field of these settings classes (lists as tuples)."""
    names = {item.name for cls in classes for item in fields(cls)}
    return {name: tuple(value) if isinstance(value, list) else value
            for name, value in vars(args).items() if name in names and value is not None}


def as_flags(settings: dict, *classes: type) -> list[str]:
    """{field: value} as the flags that set them (a bool by its switch for that value; a bool
    with no switch for it is the default and is left out)."""
    declared = {item.name: item for cls in classes for item in fields(cls)}
    shown = []
    for name, value in settings.items():
        switches = declared[name].metadata.get("switches")
        if switches:
            shown += [flag for flag, (const, _) in switches.items() if const == value][:1]
        else:
            shown.append(f"--{name.replace('_', '-')} {value}")
    return shown
