"""The command line end to end (subprocess) and its handling of bad input (in process)."""

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_text

from chargen import api
from chargen.cli import build_parser, main
from chargen.cli.flags import as_flags
from chargen.config import PRESETS, DataConfig, ModelConfig, RunConfig, TrainConfig

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
    assert several.stderr.count("--- sample") == 3 and "--- sample" not in several.stdout
    primes = api.load(str(run)).random_primes(3, 2)  # each sample starts from its own slice
    assert len(set(primes)) == 3
    places = [several.stdout.index(prime) for prime in primes]
    assert places[0] == 0 and places == sorted(places)

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
    """Content hashes of the files under root (size and mtime for huge sparse files)."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            info = path.stat()
            state[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest()
                                if info.st_size < 10_000_000 else (info.st_size, info.st_mtime_ns))
    return state


def _cases(trained):
    """(argv, exit code, words the message must contain, environment)"""
    t, no_env = "{tmp}", {}
    small_memory = {"CHARGEN_MAX_MEMORY": "1G"}
    return [
        # corpora
        (["train", f"{t}/missing.txt"], 1, "no such file", no_env),
        (["train", f"{t}/empty.txt"], 1, "empty", no_env),
        (["train", f"{t}/blank.txt"], 1, "empty", no_env),
        (["train", f"{t}/short.txt"], 1, "validation part", no_env),
        (["train", f"{t}/bad.txt"], 1, "not valid utf-8 at byte 5", no_env),
        (["train", f"{t}/mixed.txt"], 1, "not valid utf-8 at byte 16", no_env),
        (["train", f"{t}/program.bin"], 1, "binary", no_env),
        (["train", f"{t}/images"], 1, "no text files", no_env),
        (["train", f"{t}/fifo"], 1, "not a regular file", no_env),
        (["train", "/dev/zero"], 1, "not a regular file", no_env),
        (["eval", trained, f"{t}/huge/two-gigabytes.txt"], 1, "would need about", small_memory),
        (["train", f"{t}/good.txt", "--encoding", "klingon"], 2, "--encoding", no_env),
        # numbers
        (["train", f"{t}/good.txt", "--hidden-size", "0"], 2, "--hidden-size", no_env),
        (["train", f"{t}/good.txt", "--num-layers", "-2"], 2, "--num-layers", no_env),
        (["train", f"{t}/good.txt", "--seq-len", "0"], 2, "--seq-len", no_env),
        (["train", f"{t}/good.txt", "--batch-size", "-8"], 2, "--batch-size", no_env),
        (["train", f"{t}/good.txt", "--lr", "nan"], 2, "--lr", no_env),
        (["train", f"{t}/good.txt", "--val-fraction", "1.5"], 2, "--val-fraction", no_env),
        (["train", f"{t}/good.txt", "--max-time", "soon"], 2, "--max-time", no_env),
        (["train", f"{t}/good.txt", "--hidden-size", "16000", "--num-layers", "60"], 1,
         "would need about", no_env),
        (["train", f"{t}/good.txt", "--batch-size", "200000", "--hidden-size", "4096"], 1,
         "would need about", no_env),
        (["sample", trained, "--temperature", "-1"], 2, "--temperature", no_env),
        (["sample", trained, "--top-p", "0"], 2, "--top-p", no_env),
        (["sample", trained, "--top-p", "1.5"], 2, "--top-p", no_env),
        (["sample", trained, "--top-k", "-1"], 2, "--top-k", no_env),
        (["sample", trained, "--length", "-1"], 2, "--length", no_env),
        (["sample", trained, "--num", "0"], 2, "--num", no_env),
        # prompts
        (["sample", trained, "--prime", "Zebra \u00e9\u4e2d"], 1, "never saw", no_env),
        (["sample", trained, "--prime", "\u4e2d", "--unknown", "skip"], 1, "no character",
         no_env),
        (["sample", trained, "--prime", ""], 2, "prompt is empty", no_env),
        # run directories and checkpoints
        (["train", "--resume", f"{t}/nowhere"], 1, "no such run directory", no_env),
        (["train", "--resume", trained, "--hidden-size", "64"], 2, "conflicts", no_env),
        (["train", f"{t}/good.txt", "--out", trained], 1, "already exists", no_env),
        (["sample", f"{t}/nowhere"], 1, "no such run directory", no_env),
        (["sample", f"{t}/images"], 1, "not a chargen run directory", no_env),
        (["sample", f"{t}/good.txt"], 1, "is a file, not a run directory", no_env),
        (["sample", f"{t}/truncated"], 1, "not a readable safetensors", no_env),
        (["sample", f"{t}/version"], 1, "format version 99", no_env),
        (["sample", f"{t}/edited"], 1, "do not match", no_env),
        (["sample", f"{t}/no-tokenizer"], 1, "tokenizer.json is missing", no_env),
        (["sample", f"{t}/other-vocab"], 1, "do not match", no_env),
        (["sample", f"{t}/pickled"], 1, "not a readable safetensors", no_env),
        (["train", "--resume", f"{t}/pickled"], 1, "not a readable safetensors", no_env),
        (["eval", trained, f"{t}/missing.txt"], 1, "no such file", no_env),
        (["eval", f"{t}/nowhere", f"{t}/good.txt"], 1, "no such run directory", no_env),
    ]


def _broken_copy(trained: Path, target: Path, damage) -> None:
    shutil.copytree(trained, target)
    damage(target)


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.fixture
def bad_inputs(tmp_path, trained_run):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_text("  \n\t\n   \n")
    (tmp_path / "short.txt").write_text("too short\n")
    (tmp_path / "bad.txt").write_bytes(b"abcd \xff\xfe more")
    (tmp_path / "mixed.txt").write_bytes("caf\u00e9 in utf8, ".encode()[:13] + b"caf\xe9 latin")
    (tmp_path / "program.bin").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00" * 100)
    (tmp_path / "good.txt").write_text(make_text(20000))
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "huge").mkdir()
    with open(tmp_path / "huge" / "two-gigabytes.txt", "wb") as handle:
        handle.truncate(2 * 1024**3)  # sparse: takes no disk space
    half = (trained_run / "best.safetensors").stat().st_size // 2
    breakages = {
        "truncated": lambda d: (d / "best.safetensors").write_bytes(
            (d / "best.safetensors").read_bytes()[:half]),
        "version": lambda d: _edit_json(d / "config.json",
                                        lambda c: c.update(format_version=99)),
        "edited": lambda d: _edit_json(d / "config.json",
                                       lambda c: c["config"]["model"].update(hidden_size=48)),
        "no-tokenizer": lambda d: (d / "tokenizer.json").unlink(),
        "other-vocab": lambda d: _edit_json(d / "tokenizer.json",
                                            lambda t: t.update(chars=t["chars"][:-3])),
        "pickled": lambda d: [(d / n).write_bytes(pickle.dumps({"weights": [1, 2]}))
                              for n in ("best.safetensors", "last.safetensors")],
    }
    for name, damage in breakages.items():
        _broken_copy(trained_run, tmp_path / name, damage)
    return tmp_path


def test_bad_input_table(bad_inputs, trained_run, capsys, monkeypatch):
    monkeypatch.chdir(bad_inputs)
    cases = _cases(str(trained_run))
    assert len(cases) >= 30
    for argv, code, words, env in cases:
        argv = [a.replace("{tmp}", str(bad_inputs)) for a in argv]
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        before = _snapshot(bad_inputs) | _snapshot(trained_run)
        assert main(argv) == code, argv
        captured = capsys.readouterr()
        assert captured.out == "", argv  # nothing half-printed before the error
        err = captured.err.strip().splitlines()
        assert err[-1].startswith("chargen: error:"), (argv, err)
        assert words.lower() in err[-1].lower(), (argv, err[-1])
        assert not any("Traceback" in line for line in err), argv
        assert _snapshot(bad_inputs) | _snapshot(trained_run) == before, argv
        assert not (bad_inputs / "runs").exists(), argv
        for key in env:
            monkeypatch.delenv(key)


def test_sample_precision_and_unknown_flags(trained_run, capsys):
    assert main(["sample", str(trained_run), "--prime", "The", "--length", "12", "--seed", "3",
                 "--precision", "fp32"]) == 0
    assert capsys.readouterr().out.startswith("The")
    assert main(["sample", str(trained_run), "--prime", "The", "--length", "12", "--seed", "3",
                 "--precision", "int8", "--num", "2"]) == 0
    assert capsys.readouterr().err.count("--- sample") == 2
    assert main(["sample", str(trained_run), "--prime", "The \u4e2d", "--unknown", "skip",
                 "--length", "5", "--num", "40", "--seed", "3"]) == 0
    assert capsys.readouterr().err.count("--- sample") == 40


def test_demo_trains_on_the_builtin_corpus_and_prints_samples(tmp_path, capsys):
    assert main(["demo", "--max-time", "3s", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "validation:" in out and "bits/char" in out
    assert f"run directory: {tmp_path / 'demo'}" in out
    assert (tmp_path / "demo" / "best.safetensors").exists()


def test_sample_stop_and_repetition_penalty_flags(trained_run, capsys):
    assert main(["sample", str(trained_run), "--prime", "The", "--length", "300", "--seed", "4",
                 "--stop", "o", "--stop", "xyz", "--repetition-penalty", "1.2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The") and "o" not in out[3:]
    assert main(["sample", str(trained_run), "--repetition-penalty", "-1"]) == 2


def test_presets_are_listed(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "tiny: --hidden-size 32" in out and "default: (the defaults)" in out
    text = " ".join(out.split())  # the lines as printed, unwrapped
    for name, settings in PRESETS.items():  # every flag shown is one `chargen train` takes
        flags = as_flags(settings, ModelConfig, DataConfig, TrainConfig)
        assert ", ".join(flags) in text
        parsed = vars(build_parser().parse_args(["train", *" ".join(flags).split()]))
        given = {key: parsed[key] for key in settings}  # None: not given, the default
        assert RunConfig().with_overrides(given) == RunConfig().with_overrides(settings), name


def test_info_describes_a_run(trained_run, capsys):
    assert main(["info", str(trained_run)]) == 0
    out = capsys.readouterr().out
    assert "LSTM 1x32" in out and "parameters" in out and "best validation" in out
    assert "best.safetensors" in out and "trained      20 steps" in out
    assert main(["info", str(trained_run / "nowhere")]) == 1
