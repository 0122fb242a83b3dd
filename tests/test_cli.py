"""The command line end to end (subprocess) and its handling of bad input (in process)."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_text

from chargen.cli import main

TINY = ["--hidden-size", "32", "--num-layers", "1", "--embedding-dim", "16", "--seq-len", "32",
        "--batch-size", "8", "--eval-every", "10", "--warmup-steps", "0", "--device", "cpu"]


def run_cli(*args, cwd=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("CHARGEN_TRACEBACK", None)
    return subprocess.run([sys.executable, "-m", "chargen", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def test_train_sample_eval_end_to_end(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(6000))
    run = tmp_path / "run"
    trained = run_cli("train", corpus, "--out", run, "--max-steps", "30", *TINY)
    assert trained.returncode == 0, trained.stderr
    assert trained.stdout == ""  # stdout carries only payload
    assert "validation" in trained.stderr and "bits/char" in trained.stderr
    assert "characters" in trained.stderr and "train" in trained.stderr

    sampled = run_cli("sample", run, "--prime", "The quick", "--length", "80", "--seed", "1",
                      "--temperature", "0.8", "--top-k", "5", "--top-p", "0.9")
    assert sampled.returncode == 0, sampled.stderr
    assert sampled.stdout.startswith("The quick")
    assert len(sampled.stdout) >= len("The quick") + 80
    again = run_cli("sample", run, "--prime", "The quick", "--length", "80", "--seed", "1",
                    "--temperature", "0.8", "--top-k", "5", "--top-p", "0.9")
    assert again.stdout == sampled.stdout

    several = run_cli("sample", run, "--num", "3", "--length", "40", "--seed", "2")
    assert several.returncode == 0, several.stderr
    assert several.stdout.count("--- sample") == 3

    evaluated = run_cli("eval", run, corpus)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "nats/char" in evaluated.stdout and "bits/char" in evaluated.stdout

    resumed = run_cli("train", "--resume", run, "--max-steps", "40")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "40 steps" in resumed.stderr


def test_help_does_not_import_torch():
    code = "import sys; from chargen.cli import build_parser; build_parser(); " \
           "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def test_bad_input_in_a_subprocess_has_no_traceback(tmp_path):
    result = run_cli("train", tmp_path / "missing.txt", "--out", tmp_path / "run")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("chargen: error:")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def _snapshot(root: Path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _cases(trained):
    """(argv, exit code, words the message must contain)"""
    return [
        (["train", "{tmp}/missing.txt"], 1, "no such file"),
        (["train", "{tmp}/empty.txt"], 1, "empty"),
        (["train", "{tmp}/short.txt"], 1, "validation part"),
        (["train", "{tmp}/bad.txt"], 1, "not valid utf-8 at byte 5"),
        (["train", "{tmp}/images"], 1, "no text files"),
        (["train", "{tmp}/good.txt", "--hidden-size", "0"], 2, "--hidden-size"),
        (["train", "{tmp}/good.txt", "--num-layers", "-2"], 2, "--num-layers"),
        (["train", "{tmp}/good.txt", "--seq-len", "0"], 2, "--seq-len"),
        (["train", "{tmp}/good.txt", "--batch-size", "-8"], 2, "--batch-size"),
        (["train", "{tmp}/good.txt", "--lr", "nan"], 2, "--lr"),
        (["train", "{tmp}/good.txt", "--max-time", "soon"], 2, "--max-time"),
        (["train", "--resume", "{tmp}/nowhere"], 1, "no such run directory"),
        (["train", "--resume", trained, "--hidden-size", "64"], 2, "conflicts"),
        (["train", "{tmp}/good.txt", "--out", trained], 1, "already exists"),
        (["sample", "{tmp}/nowhere"], 1, "no such run directory"),
        (["sample", trained, "--temperature", "-1"], 2, "--temperature"),
        (["sample", trained, "--top-p", "0"], 2, "--top-p"),
        (["sample", trained, "--top-p", "1.5"], 2, "--top-p"),
        (["sample", trained, "--top-k", "-1"], 2, "--top-k"),
        (["sample", trained, "--length", "-1"], 2, "--length"),
        (["sample", trained, "--prime", "Zebra \u00e9\u4e2d"], 1, "never saw"),
        (["sample", trained, "--prime", ""], 2, "prompt is empty"),
        (["eval", trained, "{tmp}/missing.txt"], 1, "no such file"),
        (["eval", "{tmp}/nowhere", "{tmp}/good.txt"], 1, "no such run directory"),
    ]


@pytest.fixture
def bad_inputs(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "short.txt").write_text("too short\n")
    (tmp_path / "bad.txt").write_bytes(b"abcd \xff\xfe more")
    (tmp_path / "good.txt").write_text(make_text(20000))
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    return tmp_path


def test_bad_input_table(bad_inputs, trained_run, capsys, monkeypatch):
    monkeypatch.chdir(bad_inputs)
    for argv, code, words in _cases(str(trained_run)):
        argv = [a.replace("{tmp}", str(bad_inputs)) for a in argv]
        before = _snapshot(bad_inputs) | _snapshot(trained_run)
        assert main(argv) == code, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("chargen: error:"), (argv, err)
        assert words.lower() in err[-1].lower(), (argv, err[-1])
        assert _snapshot(bad_inputs) | _snapshot(trained_run) == before, argv
        assert not (bad_inputs / "runs").exists(), argv
