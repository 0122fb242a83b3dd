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


SERVER_BLOCK = "# with `chargen serve"


def test_readme_python_snippets_run(tmp_path, monkeypatch):
    """Each ```python block of the README runs as written, on a small corpus and for a few
    steps (its keywords go to chargen.train unchanged; the sizes are made tiny). A block that
    talks to a running server says so in its first line and is left to test_openai.py."""
    from conftest import make_text, tiny_settings

    import chargen

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("ROMEO: JULIET: held-out\n" + make_text(3000), encoding="utf-8")
    train = chargen.train

    def quick(_, run_dir, **settings):
        return train(str(corpus), run_dir, **{**settings, **tiny_settings(max_steps=5)})

    monkeypatch.setattr(chargen, "train", quick)
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    blocks = [block for block in blocks if not block.startswith(SERVER_BLOCK)]
    assert blocks
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})  # noqa: S102 - the README's own code
    assert (tmp_path / "runs" / "shakespeare" / "config.json").is_file()


def test_the_api_names_stay_the_api_after_its_modules_load():
    """`chargen.train` is the function however often it is used (a module of that name once
    replaced it after the first import, so a notebook's second call failed)."""
    import chargen
    import chargen.api  # noqa: F401 - loads every module the API uses

    assert callable(chargen.train) and callable(chargen.load)
    assert chargen.train is chargen.api.train
