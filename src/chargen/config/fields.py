"""Each setting declared once: a dataclass field whose metadata says how it reads on the command
line (help, choices, metavar, switches). cli/flags.py builds the flags from it; the validators
read the same choices."""

from __future__ import annotations

from dataclasses import MISSING, Field, field, fields
from typing import Any


def setting(default: Any = MISSING, *, help: str = "", choices: tuple = (),  # noqa: A002
            metavar: str | None = None, switches: dict[str, Any] | None = None,
            aliases: tuple[str, ...] = (), parse: str | None = None, group: str | None = None,
            flag: bool = True, default_factory: Any = MISSING) -> Field:
    """A settings field. `switches`: flags that store a constant (a bool's --lowercase: True,
    --keep-case: False); `aliases`: other names of the flag; `parse`: "duration" for times;
    `group`: the --help section when not the class's; `flag=False`: no command-line flag."""
    metadata = {"help": help, "choices": choices, "metavar": metavar, "switches": switches,
                "aliases": aliases, "parse": parse, "group": group, "flag": flag}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def choices_of(cls: type, name: str) -> tuple:
    """The declared choices of a field."""
    return next(f.metadata["choices"] for f in fields(cls) if f.name == name)
