import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from chargen.config import preset

# Auto-config times a few steps of the default model at start-up; tests use the nominal
# speed instead, so that what the CLI chooses does not depend on how busy the machine is.
os.environ.setdefault("CHARGEN_NO_PROBE", "1")
# A fixed thread count, so that the machine's load cannot change a run's arithmetic between
# two runs a test compares (threads.py follows the free cores otherwise; tested on its own).
os.environ.setdefault("OMP_NUM_THREADS", str(min(os.cpu_count() or 1, 2)))

WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hum".split()


def make_text(n_chars: int, seed: int = 0) -> str:
    """Deterministic English-like text with newlines."""
    rng = random.Random(seed)
    lines, size = [], 0
    while size < n_chars:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))).capitalize() + "."
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)[:n_chars] + "\n"


def cli_without_torch(argv: list[str], stderr: bool = False):
    """Run the chargen CLI in a fresh interpreter, check that it exits 0 without ever importing
    torch (the ONNX export's sampling path), and return its stdout (and stderr if asked)."""
    script = ("import sys\nfrom chargen.cli import main\n"
              f"rc = main({argv!r})\n"
              "assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(rc)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return (done.stdout, done.stderr) if stderr else done.stdout


def tiny_settings(**overrides):
    """The tiny preset on CPU in fp32, so results are exact and quick; api.train keywords
    (auto-configuration off, as a preset turns it off on the command line)."""
    settings = preset("tiny")
    settings.update(device="cpu", precision="fp32", log_every=5, auto=False)
    settings.update(overrides)
    return settings


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(make_text(6000), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One tiny run shared by the read-only tests."""
    from chargen import api

    base = tmp_path_factory.mktemp("trained")
    corpus = base / "corpus.txt"
    corpus.write_text(make_text(6000), encoding="utf-8")
    result = api.train(str(corpus), str(base / "run"), quiet=True, **tiny_settings())
    return result.run_dir


LINES = ["hello world", "good morning", "see you soon"]


def train_lines(tmp_path: Path, name: str = "run", **overrides):
    """A document run (one unit per line) on LINES, trained until it has learnt them."""
    from chargen import api

    corpus = tmp_path / "lines.txt"
    corpus.write_text("\n".join(LINES * 40) + "\n")
    settings = tiny_settings(batching="documents", hidden_size=48, lr=1e-2, max_steps=120,
                             eval_every=60, val_fraction=0.1)
    settings.update(overrides)
    return api.train(str(corpus), str(tmp_path / name), quiet=True, **settings)


@pytest.fixture(scope="session")
def line_run(tmp_path_factory) -> Path:
    """One document run shared by the read-only tests."""
    return train_lines(tmp_path_factory.mktemp("docs")).run_dir


@pytest.fixture
def corpora_dir() -> Path:
    value = os.environ.get("CHARGEN_CORPORA")
    if not value or not Path(value).is_dir():
        pytest.skip("CHARGEN_CORPORA is not set to the shared corpora directory (make test sets it)")
    return Path(value)
