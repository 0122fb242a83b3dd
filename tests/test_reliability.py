"""Faults during training (kills, signals, divergence, a full disk) and hostile checkpoints."""

import os
import pickle
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import make_text, tiny_settings

from chargen import api
from chargen.checkpoint import LAST, RunDir, load_checkpoint
from chargen.cli import main
from chargen.errors import CheckpointError
from chargen.trainer import Trainer

HERE = Path(__file__).resolve().parent
TINY_FLAGS = ["--hidden-size", "32", "--num-layers", "1", "--embedding-dim", "16", "--seq-len",
              "32", "--batch-size", "8", "--warmup-steps", "0", "--device", "cpu", "--eval-every",
              "5", "--log-every", "5", "--schedule", "constant"]


def _start(*args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(HERE / "fault_runner.py"), *map(str, args)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)


def _wait_for(process, marker: str, timeout: float = 120.0) -> str:
    """Read stderr until a line containing `marker`; returns that line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stderr], [], [], 1.0)
        if ready:
            line = process.stderr.readline()
            if marker in line:
                return line
            if not line and process.poll() is not None:
                break
    code = process.poll()
    process.kill()  # a failed wait must not leave a trainer running behind the suite
    raise AssertionError(f"never saw {marker!r} (exit {code})")


def _last_step(run: Path) -> int:
    return load_checkpoint(run / LAST)[2]["progression"]["step"]


def test_sigkill_at_20_moments_never_loses_the_run(tmp_path):
    rng = random.Random(20)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(20000))
    run = tmp_path / "run"
    outcomes = {"kills": 0, "loadable": 0, "resumed": 0, "during_write": 0}
    command = ["train", corpus, "--out", run, "--max-steps", "100000", *TINY_FLAGS]
    previous_step = 0
    for kill in range(20):
        process = _start(*command)
        try:  # killed however the waits end: a failed wait must not leave a trainer running
            if kill == 0:
                _wait_for(process, "WRITING last.safetensors")  # a checkpoint exists from here on
            else:
                _wait_for(process, "resuming")
                outcomes["resumed"] += 1
            if kill % 2 == 0:  # in the middle of a checkpoint write
                _wait_for(process, "WRITING")
                outcomes["during_write"] += 1
            else:  # at a random moment of training
                _wait_for(process, "step ")
                time.sleep(rng.uniform(0.0, 0.5))
        finally:
            process.kill()
            process.wait()
        outcomes["kills"] += 1
        model = api.load(str(run), which="last")
        assert len(model.sample("The ", length=20, seed=kill)[0]) == 20
        step = _last_step(run)
        assert step >= previous_step
        previous_step = step
        outcomes["loadable"] += 1
        command = ["train", "--resume", run]
    final = main(["train", "--resume", str(run), "--max-steps", str(previous_step + 10)])
    assert final == 0 and _last_step(run) == previous_step + 10
    outcomes["resumed"] += 1  # every kill was followed by a resume that went on training
    assert not list(run.glob(".*.tmp"))  # resume cleared what the kills left
    print(f"\nfault injection: {outcomes}")
    assert outcomes == {"kills": 20, "loadable": 20, "resumed": 20, "during_write": 10}


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_finishes_the_step_saves_and_says_how_to_resume(tmp_path, sig, code):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(20000))
    run = tmp_path / "run"
    process = _start("train", corpus, "--out", run, "--max-steps", "100000", *TINY_FLAGS)
    _wait_for(process, "step 10")
    process.send_signal(sig)
    rest = process.stderr.read()
    assert process.wait() == code
    assert f"chargen train --resume {run}" in rest
    assert "Traceback" not in rest
    assert _last_step(run) >= 10
    api.load(str(run), which="last")


def _inject_nan_once(monkeypatch, at_step: int):
    original = Trainer._train_step
    fired = []

    def step(self, number):
        loss, positions = original(self, number)
        if number == at_step and not fired:
            fired.append(number)
            return torch.tensor(float("nan")), positions
        return loss, positions

    monkeypatch.setattr(Trainer, "_train_step", step)
    return fired


def test_divergence_stops_with_a_message_and_keeps_the_checkpoints(tmp_path, monkeypatch, capsys):
    _inject_nan_once(monkeypatch, at_step=7)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(6000))
    run = tmp_path / "run"
    code = main(["train", str(corpus), "--out", str(run), "--max-steps", "20", *TINY_FLAGS])
    assert code == 1
    assert "diverged at step 10" in capsys.readouterr().err
    assert _last_step(run) == 5
    api.load(str(run))


def test_divergence_rollback_halves_the_lr_and_finishes(tmp_path, monkeypatch):
    fired = _inject_nan_once(monkeypatch, at_step=7)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(6000))
    result = api.train(str(corpus), str(tmp_path / "run"), quiet=True,
                       **tiny_settings(max_steps=20, eval_every=5, on_divergence="rollback"))
    assert fired == [7] and result.steps == 20
    info = load_checkpoint(tmp_path / "run" / LAST)[2]["progression"]
    assert info["lr_scale"] == 0.5 and info["rollbacks"] == 1


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(6000))
    run = tmp_path / "run"
    real_fsync, saves = os.fsync, []

    def fsync(fd):
        if Path(f"/proc/self/fd/{fd}").resolve().name.startswith(".last.safetensors"):
            saves.append(fd)
            if len(saves) > 1:
                raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code = main(["train", str(corpus), "--out", str(run), "--max-steps", "20", *TINY_FLAGS])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "No space left on device" in err and "previous file is intact" in err
    assert _last_step(run) == 5
    assert not list(run.glob(".*.tmp"))


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_posing_as_a_checkpoint_is_rejected_not_executed(tmp_path, trained_run):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(str(marker)))
    assert not marker.exists()
    for name in ("best.safetensors", "last.safetensors", "ids.npy"):
        (run / name).write_bytes(payload)
    with pytest.raises(CheckpointError):
        api.load(str(run))
    with pytest.raises(CheckpointError):
        api.train(resume=str(run), quiet=True)
    with pytest.raises(CheckpointError):
        RunDir(run).read_ids()
    assert not marker.exists()
    pickle.loads(payload)  # the payload is real: unpickling it does run code
    assert marker.exists()


def test_no_load_path_unpickles():
    source = "\n".join(p.read_text() for p in (HERE.parent / "src" / "chargen").rglob("*.py"))
    assert "import pickle" not in source
    assert "allow_pickle=True" not in source
    assert "torch.load(" not in source.replace("torch.load(weights_only=True", "")


def test_run_files_cannot_escape_the_run_directory(trained_run):
    run = RunDir(trained_run)
    for name in ("../config.json", "/etc/passwd", "..", "a/b"):
        with pytest.raises(CheckpointError):
            run.file(name)


def test_prompt_unknown_policies_and_a_long_prompt(trained_run):
    model = api.load(str(trained_run))
    with pytest.raises(Exception, match="never saw"):
        model.sample("The Zebra", length=5)
    assert len(model.sample("The Zebra", length=5, unknown="skip", seed=1)[0]) == 5
    assert len(model.sample("The Zebra", length=5, unknown="replace", seed=1)[0]) == 5
    long_prompt = make_text(100_000)
    assert len(model.sample(long_prompt, length=10, seed=1)[0]) == 10


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
    """Stopped by SIGINT at whatever step, resumed with no flags: identical to no stop,
    cosine schedule, dropout and the carried stream state included."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(20000))
    flags = [*TINY_FLAGS[:-2], "--schedule", "cosine", "--warmup-steps", "5", "--dropout", "0.2",
             "--num-layers", "2", "--max-steps", "120"]
    straight = main(["train", str(corpus), "--out", str(tmp_path / "straight"), *flags])
    process = _start("train", corpus, "--out", tmp_path / "split", *flags)
    _wait_for(process, "step 10")
    process.send_signal(signal.SIGINT)
    process.stderr.read()
    assert process.wait() == 130 and straight == 0
    stopped_at = _last_step(tmp_path / "split")
    assert 10 <= stopped_at < 120
    assert main(["train", "--resume", str(tmp_path / "split")]) == 0
    a, _, _ = load_checkpoint(tmp_path / "straight" / LAST)
    b, _, _ = load_checkpoint(tmp_path / "split" / LAST)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
