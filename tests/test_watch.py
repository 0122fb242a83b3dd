"""Watching a run: samples during training, the progress display, TensorBoard events."""

import logging

import pytest
import torch
from conftest import tiny_settings

from chargen import api
from chargen.checkpoint import LAST, RunDir, load_checkpoint
from chargen.config import TrainConfig
from chargen.errors import ChargenError, ConfigError
from chargen.progress import Progress
from chargen.watch import SAMPLES, choose_prime


def test_prime_is_the_start_of_the_first_whole_line_cut_after_a_word():
    assert choose_prime("ick brown.\nThe lazy dog sleeps\nMore", limit=40) == "The lazy dog sleeps\nMore"
    assert choose_prime("x\nalpha beta gamma delta", limit=14) == "alpha beta"
    assert choose_prime("a short text here", limit=10) == "a short"
    assert choose_prime("ends here\n", limit=40) == "ends here\n"
    assert choose_prime("tail\n\n\nNAME:\nSpeech", limit=40) == "NAME:\nSpeech"


@pytest.mark.parametrize("value", [-1, 2.5, True])
def test_sample_every_must_be_a_whole_number_of_steps(value):
    with pytest.raises(ConfigError, match="--sample-every"):
        TrainConfig(sample_every=value).validate()


def test_sample_length_must_be_positive():
    with pytest.raises(ConfigError, match="--sample-length"):
        TrainConfig(sample_length=0).validate()


def test_samples_are_written_every_n_steps(text_file, tmp_path):
    run = tmp_path / "run"
    api.train(str(text_file), str(run), quiet=True,
              **tiny_settings(max_steps=20, sample_every=5, sample_length=30))
    samples = RunDir(run).read_jsonl(SAMPLES)
    assert [s["step"] for s in samples] == [5, 10, 15, 20]
    assert all(len(s["text"]) == 30 for s in samples)
    assert len({s["prime"] for s in samples}) == 1 and samples[0]["prime"]
    assert samples[0]["prime"] in text_file.read_text()
    assert all(s["temperature"] == 0.8 and s["time"] >= 0 for s in samples)


def test_samples_default_to_each_evaluation_and_zero_turns_them_off(text_file, tmp_path):
    api.train(str(text_file), str(tmp_path / "a"), quiet=True, **tiny_settings(max_steps=20))
    assert [s["step"] for s in RunDir(tmp_path / "a").read_jsonl(SAMPLES)] == [10, 20]
    api.train(str(text_file), str(tmp_path / "b"), quiet=True,
              **tiny_settings(max_steps=20, sample_every=0))
    assert not (tmp_path / "b" / SAMPLES).exists()


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_sampling_during_training_leaves_training_unchanged(text_file, tmp_path, dropout):
    weights = []
    for every in (0, 3):
        run = tmp_path / f"every{every}"
        api.train(str(text_file), str(run), quiet=True,
                  **tiny_settings(max_steps=12, sample_every=every, dropout=dropout, num_layers=2))
        weights.append(load_checkpoint(run / LAST)[0])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_plain_progress_lines_show_epoch_and_samples(caplog):
    progress = Progress(total_steps=100, max_time=None, step=0, elapsed=0.0, steps_per_epoch=40)
    with caplog.at_level(logging.INFO, logger="chargen"), progress:
        progress.update(30, 3.0, loss=2.5, chars_per_s=1000.0)
        progress.validation(30, 2.0, 2.885, improved=True)
        progress.sample(30, "The fox\njumps")
    text = caplog.text
    assert "step 30/100" in text and "epoch 0.75" in text and "eta" in text
    assert "  | The fox\n  | jumps" in text


def test_quiet_progress_shows_nothing(caplog):
    progress = Progress(100, None, 0, 0.0, quiet=True, steps_per_epoch=40)
    with caplog.at_level(logging.INFO, logger="chargen"), progress:
        progress.update(30, 3.0, loss=2.5, chars_per_s=1000.0)
        progress.sample(30, "The fox")
    assert caplog.text == ""


def test_tensorboard_events_hold_the_scalars_and_samples(text_file, tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="tensorboard is not installed (pip install 'chargen[tensorboard]')")
    run = tmp_path / "run"
    api.train(str(text_file), str(run), quiet=True, **tiny_settings(max_steps=10, tensorboard=True))
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    accumulator = event_accumulator.EventAccumulator(str(run / "tensorboard"))
    accumulator.Reload()
    scalars = set(accumulator.Tags()["scalars"])
    assert {"loss/train", "loss/validation", "bits_per_char/validation", "bits_per_char/train",
            "learning_rate", "chars_per_second"} <= scalars
    assert [e.step for e in accumulator.Scalars("loss/validation")] == [10]
    assert "sample/text_summary" in accumulator.Tags()["tensors"]


def test_a_missing_tensorboard_is_one_clear_error_before_any_work(text_file, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ChargenError, match=r"pip install 'chargen\[tensorboard\]'") as caught:
        api.train(str(text_file), str(tmp_path / "run"), quiet=True, **tiny_settings(tensorboard=True))
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_watch_flags_end_to_end(text_file, tmp_path):
    from test_cli import TINY, run_cli

    run = tmp_path / "run"
    done = run_cli("train", text_file, "--out", run, "--max-steps", "12", "--sample-every", "6",
                   "--sample-length", "25", "--tensorboard", *TINY)
    assert done.returncode == 0, done.stderr
    assert "step 6: sample\n  | " in done.stderr and "epoch 0." in done.stderr
    assert [s["step"] for s in RunDir(run).read_jsonl(SAMPLES)] == [6, 12]
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    quiet = run_cli("train", "--resume", run, "--max-steps", "18", "--no-tensorboard", "--quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert "sample" not in quiet.stderr
    assert [s["step"] for s in RunDir(run).read_jsonl(SAMPLES)] == [6, 12, 18]
    assert list((run / "tensorboard").glob("events.out.tfevents.*")) == events  # none added
    refused = run_cli("sample", run, "--interactive", "--num", "2")
    assert refused.returncode == 1 and refused.stderr.startswith("chargen: error:")
    assert "--num" in refused.stderr
