"""The README's commands must exist: every `chargen ...` line parses with the real CLI."""

import re
import shlex
from pathlib import Path

import pytest

from chargen.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_commands():
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```(?:console|bash|sh)\n(.*?)```", text, re.S)
    commands = []
    for block in blocks:
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("chargen "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_readme_has_cli_examples():
    commands = _readme_commands()
    assert {c[0] for c in commands} >= {"train", "sample", "eval"}


@pytest.mark.parametrize("argv", _readme_commands(), ids=" ".join)
def test_readme_command_parses(argv):
    build_parser().parse_args(argv)  # argparse exits on an unknown command or flag


def test_readme_shows_the_two_setup_commands():
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text


def test_makefile_targets_exist():
    makefile = (README.parent / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
