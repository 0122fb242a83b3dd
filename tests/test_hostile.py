"""Reliability II: what a hostile or careless user does to chargen, one class at a time.

Every case ends in one line on stderr, a non-zero exit and no file of the run changed, or
in a result that says what it scored. The run lock and the server are tested for real (in
processes and over sockets); the fuzz tests for every numeric flag are in test_fuzz.py.
"""

import hashlib
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_text, tiny_settings

from chargen import api
from chargen.checkpoint import BEST, CONFIG, LAST
from chargen.cli import main
from chargen.corpus import load_corpus
from chargen.errors import ChargenError, CheckpointError, ConfigError, CorpusError
from chargen.runlock import LOCK

TINY = ["--hidden-size", "32", "--num-layers", "1", "--embedding-dim", "16", "--seq-len", "32",
        "--batch-size", "8", "--warmup-steps", "0", "--device", "cpu", "--precision", "fp32",
        "--eval-every", "5", "--log-every", "5", "--no-auto"]
WAIT = 120.0  # seconds: a bound on a loaded machine, only reached on failure


def cli(*args, env=None):
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    environment.pop("CHARGEN_TRACEBACK", None)
    return subprocess.run([sys.executable, "-m", "chargen", *map(str, args)], capture_output=True,
                          text=True, env=environment, timeout=300)


def start(*args) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    environment.pop("CHARGEN_TRACEBACK", None)
    return subprocess.Popen([sys.executable, "-m", "chargen", *map(str, args)], text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)


def one_line_error(done, *words, code=None) -> str:
    """The failure shape every bad input must have."""
    assert done.returncode != 0, done.stderr
    if code is not None:
        assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("chargen: error:")]
    assert len(errors) == 1, done.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def fingerprints(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(directory).iterdir()) if p.is_file()}


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A private copy of the shared tiny run, free to damage."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def wait_until(condition, what: str):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if condition():
            return
        select.select([], [], [], 0.02)  # poll interval
    raise AssertionError(f"timed out waiting for {what}")


# -- one writer per run ------------------------------------------------------------------
def _holder(run: Path) -> str:
    try:
        return (run / LOCK).read_text().strip()
    except FileNotFoundError:
        return ""


def test_a_second_writer_is_refused_and_a_killed_writer_is_taken_over(run_copy):
    first = start("train", "--resume", run_copy, "--max-steps", "100000000", "--max-time", "10m")
    try:
        wait_until(lambda: _holder(run_copy) == str(first.pid), "the first trainer's lock")
        second = cli("train", "--resume", run_copy, "--max-steps", "100000000")
        one_line_error(second, f"PID {first.pid}", "another chargen process")
        assert first.poll() is None  # the holder trains on, untouched
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=WAIT)
    steps = api.run_info(str(run_copy))["steps"]
    resumed = cli("train", "--resume", run_copy, "--max-steps", steps + 3)
    assert resumed.returncode == 0, resumed.stderr  # the dead holder's lock is taken over
    assert _holder(run_copy) != str(first.pid) and api.run_info(str(run_copy))["steps"] == steps + 3


def test_the_lock_is_held_while_training_and_released_after(tmp_path, text_file):
    from chargen.runlock import RunBusy, RunLock

    result = api.train(str(text_file), str(tmp_path / "run"), quiet=True, **tiny_settings())
    lock = RunLock(result.run_dir).acquire()  # free again once training returned
    try:
        with pytest.raises(RunBusy, match=f"PID {os.getpid()}"):
            api.train(resume=str(result.run_dir), max_steps=30, quiet=True)
    finally:
        lock.release()


# -- bounded reads -----------------------------------------------------------------------
def test_a_weights_file_that_is_a_device_is_refused_at_once(run_copy):
    (run_copy / BEST).unlink()
    (run_copy / BEST).symlink_to("/dev/zero")
    for command in (["sample", run_copy, "--length", "5"], ["eval", run_copy, run_copy / CONFIG]):
        one_line_error(cli(*command), "not a regular file")


def test_a_weights_file_larger_than_its_model_is_not_read(run_copy):
    os.truncate(run_copy / BEST, 10**11)  # sparse: 100 GB claimed, nothing on disk
    one_line_error(cli("sample", run_copy, "--length", "5"), "more than the")


def test_a_damaged_header_ids_or_json_is_one_line(run_copy):
    weights = run_copy / LAST
    data = bytearray(weights.read_bytes())
    data[:8] = (10**15).to_bytes(8, "little")
    weights.write_bytes(bytes(data))
    one_line_error(cli("train", "--resume", run_copy, "--max-steps", "99"), "not a readable")
    with open(run_copy / "ids.npy", "ab") as handle:
        handle.write(b"\0" * 4096)
    with pytest.raises(CheckpointError, match="ids"):
        api.train(resume=str(run_copy), max_steps=99, quiet=True)
    os.truncate(run_copy / "tokenizer.json", 300 << 20)  # sparse
    one_line_error(cli("sample", run_copy), "tokenizer.json", "more than the")


def test_resuming_weights_of_another_shape_is_one_line(run_copy, tmp_path, text_file):
    other = api.train(str(text_file), str(tmp_path / "other"), quiet=True,
                      **tiny_settings(hidden_size=40))
    shutil.copyfile(other.run_dir / LAST, run_copy / LAST)
    one_line_error(cli("train", "--resume", run_copy, "--max-steps", "99"), "do not match")


def test_a_whole_number_setting_written_as_a_float_is_one_line(run_copy):
    meta = json.loads((run_copy / CONFIG).read_text())
    meta["config"]["model"]["hidden_size"] = 64.0
    (run_copy / CONFIG).write_text(json.dumps(meta))
    one_line_error(cli("sample", run_copy), "--hidden-size must be a whole number")


def test_a_huge_vocabulary_is_refused_before_anything_is_allocated(tmp_path):
    words = [f"w{i}" for i in range(300_000)]
    corpus = tmp_path / "words.txt"
    corpus.write_text(" ".join(words * 2) + "\n")
    done = cli("train", corpus, "--out", tmp_path / "run", "--tokenizer", "word", "--max-steps",
               "5", env={"CHARGEN_NO_PROBE": "", "CHARGEN_MAX_MEMORY": "2G"})
    one_line_error(done, "of memory", "--batch-size")
    assert not (tmp_path / "run").exists()
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert peak_kib < 2 * 1024 * 1024  # the probe would have taken 8.8 GB


# -- tracebacks that must be one line ------------------------------------------------------
@pytest.mark.parametrize("flags,words", [
    (["--seed", "100000000000000000000000"], "--seed"),
    (["--temperature", "1e39"], "--temperature"),
    (["--temperature", "1e-40"], "--temperature"),
    (["--temperature", "1e300"], "--temperature"),
    (["--temperature", "inf"], "finite"),
    (["--repetition-penalty", "1e-45"], "--repetition-penalty"),
    (["--seed", "-1"], "--seed"),
])
def test_bad_sampling_numbers_are_one_line(trained_run, flags, words):
    before = fingerprints(trained_run)
    one_line_error(cli("sample", trained_run, "--length", "5", *flags), words, code=2)
    assert fingerprints(trained_run) == before


@pytest.mark.parametrize("flags,words", [
    (["--seed", "100000000000000000000000"], "--seed"),
    (["--lr", "inf"], "--lr must be a finite number"),
    (["--encoding", "rot13"], "not a text encoding"),
    (["--encoding", "base64"], "not a text encoding"),
])
def test_bad_training_settings_are_one_line_and_create_nothing(text_file, tmp_path, flags, words):
    out = tmp_path / "run"
    one_line_error(cli("train", text_file, "--out", out, "--max-steps", "3", *TINY, *flags), words)
    assert not out.exists()


def test_utf16_encoding_on_utf8_text_is_one_line(tmp_path):
    corpus = tmp_path / "odd.txt"
    corpus.write_bytes(b"abc")  # three bytes: no whole UTF-16 unit at the end
    with pytest.raises(CorpusError, match="not valid utf-16"):
        load_corpus(str(corpus), encoding="utf-16")


def test_two_quick_ctrl_c_exit_130_without_a_traceback(tmp_path, text_file):
    process = start("train", text_file, "--out", tmp_path / "run", "--max-steps", "100000000",
                    *TINY)
    try:
        wait_until(lambda: (tmp_path / "run" / LAST).exists(), "the first checkpoint")
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=WAIT)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr


# -- silent wrong results ----------------------------------------------------------------
def test_a_utf8_bom_is_dropped_and_a_bom_only_file_is_empty(tmp_path):
    corpus = tmp_path / "bom.txt"
    corpus.write_bytes(b"\xef\xbb\xbfhello there\n")
    assert load_corpus(str(corpus)).text == "hello there\n"
    corpus.write_bytes(b"\xef\xbb\xbf")
    with pytest.raises(CorpusError, match="empty"):
        load_corpus(str(corpus))


@pytest.mark.parametrize("codec,family", [("utf-16", "utf-16"), ("utf-16-be", None),
                                          ("utf-32", "utf-32")])
def test_utf16_and_utf32_text_is_named_with_the_flag_to_pass(tmp_path, codec, family):
    corpus = tmp_path / "wide.txt"
    text = "hello there\n" * 50
    bom = b"\xfe\xff" if codec == "utf-16-be" else b""
    corpus.write_bytes(bom + text.encode(codec))
    with pytest.raises(CorpusError, match=f"--encoding {family or 'utf-16'}"):
        load_corpus(str(corpus))
    assert load_corpus(str(corpus), encoding=family or "utf-16").text == text


def test_a_nul_anywhere_is_reported_with_its_offset(tmp_path):
    corpus = tmp_path / "nul.txt"
    text = make_text(20_000)
    corpus.write_text(text[:12_345] + "\0" + text[12_345:])
    with pytest.raises(CorpusError, match="NUL character at character 12,345"):
        load_corpus(str(corpus))


def test_other_control_characters_are_reported_once(tmp_path, caplog):
    corpus = tmp_path / "bell.txt"
    corpus.write_text("ring\x07 the bell\x07\n" * 3)
    assert "\x07" in load_corpus(str(corpus)).text
    reports = [r.getMessage() for r in caplog.records if "control character" in r.getMessage()]
    assert reports == [f"{corpus}: 6 control character(s), the first at character 4; they are "
                       "trained on as they are"]


def test_eval_refuses_text_the_run_never_saw_and_says_the_share(trained_run, tmp_path):
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("日本語のテキスト" * 100 + "\n")
    one_line_error(cli("eval", trained_run, foreign), "never saw", "--allow-unknown")
    allowed = cli("eval", trained_run, foreign, "--allow-unknown")
    assert allowed.returncode == 0 and "unknown (99." in allowed.stdout, allowed.stderr


def test_eval_scores_the_whole_text(trained_run):
    model = api.load(str(trained_run), device="cpu")
    text = make_text(100_003, seed=3)
    result = model.evaluate(text)
    assert result.tokens == len(text) - 1 and result.unknown == 0


def test_plot_never_overwrites_a_file_that_is_not_a_png(trained_run, tmp_path):
    pytest.importorskip("matplotlib")
    precious = tmp_path / "notes.txt"
    precious.write_text("my notes\n")
    assert main(["plot", str(trained_run), "--out", str(precious)]) != 0
    assert precious.read_text() == "my notes\n"
    png = tmp_path / "loss.png"
    assert main(["plot", str(trained_run), "--out", str(png)]) == 0
    assert main(["plot", str(trained_run), "--out", str(png)]) == 0  # a plot may be redrawn


def test_an_out_that_cannot_be_created_is_refused_before_the_corpus_is_read(tmp_path, text_file):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match="cannot create"):
        api.train(str(tmp_path / "missing-corpus.txt"), str(blocker / "run"), quiet=True,
                  **tiny_settings())


def test_resume_with_a_step_limit_already_passed_says_so(run_copy):
    steps = api.run_info(str(run_copy))["steps"]
    before = fingerprints(run_copy)
    with pytest.raises(ConfigError, match=f"already at step {steps}"):
        api.train(resume=str(run_copy), max_steps=steps - 1, quiet=True)
    assert fingerprints(run_copy) == before


def test_the_same_validators_serve_every_entry(trained_run):
    """A setting refused on the command line is refused by the API in the same words."""
    model = api.load(str(trained_run), device="cpu")
    with pytest.raises(ConfigError, match="--temperature must be from"):
        model.sample("the", length=5, temperature=1e39)
    with pytest.raises(ConfigError, match="--seed must be a whole number"):
        model.sample("the", length=5, seed=2**64)
    with pytest.raises(ChargenError, match="--hidden-size must be a whole number"):
        api.train("builtin:python-docs", None, quiet=True, **tiny_settings(hidden_size=64.5))
    assert np.isfinite(model.evaluate(make_text(500)).nats)
