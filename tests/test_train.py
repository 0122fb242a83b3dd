import dataclasses
import json
import logging

import numpy as np
import pytest
import torch
from conftest import make_text, tiny_settings
from safetensors.torch import load_file

from chargen import api
from chargen.checkpoint import (
    BEST,
    CONFIG,
    LAST,
    METRICS,
    TRAINER_PREFIX,
    RunDir,
    atomic_write,
    checkpoint_info,
)
from chargen.config import TrainConfig
from chargen.errors import CheckpointError, ConfigError
from chargen.run_state import time_budget
from chargen.schedule import decay_starts, lr_factor


def _train(tmp_path, name="run", **overrides):
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(make_text(6000), encoding="utf-8")
    return api.train(str(corpus), str(tmp_path / name), quiet=True, **tiny_settings(**overrides))


def test_run_directory_is_self_contained(trained_run):
    files = {p.name for p in trained_run.iterdir()}
    assert {CONFIG, "tokenizer.json", "ids.npy", BEST, LAST, METRICS} <= files
    meta = json.loads((trained_run / CONFIG).read_text())
    assert meta["format_version"] == 1 and "chargen_version" in meta
    assert meta["config"]["model"]["hidden_size"] == 32
    assert not [p for p in trained_run.iterdir() if p.name.endswith(".tmp")]


def test_metrics_log_training_and_validation(trained_run):
    records = RunDir(trained_run).read_metrics()
    val = [r for r in records if "val_loss" in r]
    train = [r for r in records if "train_loss" in r]
    assert val and train
    assert val[-1]["step"] == 20
    assert all(abs(r["val_bpc"] - r["val_loss"] / 0.6931471805599453) < 1e-9 for r in val)


def test_training_lowers_the_loss(trained_run):
    val = [r["val_loss"] for r in RunDir(trained_run).read_metrics() if "val_loss" in r]
    assert val[-1] < val[0]


def test_best_weights_hold_the_lowest_validation(trained_run):
    model = api.load(str(trained_run))
    records = RunDir(trained_run).read_metrics()
    best = min(r["val_loss"] for r in records if "val_loss" in r)
    run_ids = RunDir(trained_run).read_ids()
    val_ids = run_ids[len(run_ids) - int(len(run_ids) * 0.1):]
    from chargen.evaluate import evaluate_ids

    again = evaluate_ids(model.net, val_ids, model.config.data.seq_len, torch.device("cpu"))
    assert again.nats == pytest.approx(best, rel=1e-5)


def test_checkpoint_round_trip_gives_identical_logits(tmp_path, trained_run):
    model = api.load(str(trained_run))
    ids = torch.randint(1, model.net.vocab_size, (2, 30), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before, _ = model.net(ids)
    weights = load_file(str(trained_run / BEST))
    fresh = api.load(str(trained_run))
    fresh.net.load_state_dict(weights)
    with torch.no_grad():
        after, _ = fresh.net(ids)
    assert torch.equal(before, after)


@pytest.mark.parametrize("batching, ema", [("stream", 0.0), ("sequences", 0.0), ("stream", 0.9)])
def test_resume_is_exact(tmp_path, batching, ema):
    """With a weight average, the average resumes exactly too (its tensors are in LAST)."""
    # A constant schedule: a cosine planned for 12 steps differs from one planned for 24.
    settings = {"batching": batching, "schedule": "constant", "warmup_steps": 5, "dropout": 0.2,
                "num_layers": 2, "ema": ema}
    straight = _train(tmp_path, "straight", max_steps=24, **settings)
    _train(tmp_path, "split", max_steps=12, **settings)
    resumed = api.train(resume=str(tmp_path / "split"), max_steps=24, quiet=True)
    assert resumed.steps == straight.steps == 24
    a = load_file(str(tmp_path / "straight" / LAST))
    b = load_file(str(tmp_path / "split" / LAST))
    assert any(key.startswith(TRAINER_PREFIX + "average.") for key in a) == bool(ema)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    val = [{r["step"]: r["val_loss"] for r in RunDir(tmp_path / name).read_metrics()
            if "val_loss" in r} for name in ("straight", "split")]
    assert val[0][10] == val[1][10] and val[0][20] == val[1][20]


def test_a_weight_average_competes_for_the_best_weights(tmp_path):
    # tied weights: one tensor under two names, saved in LAST all the same. A high constant
    # rate leaves the raw weights noisy near the end, where their average does better.
    result = _train(tmp_path, max_steps=30, ema=0.8, eval_every=5, tie_weights=True,
                    embedding_dim=32, lr=0.1, schedule="constant")
    records = [r for r in RunDir(result.run_dir).read_metrics() if "val_loss" in r]
    assert all(r["val_loss"] == min(r["val_loss_raw"], r["val_loss_ema"]) for r in records)
    assert any(r["val_loss_ema"] < r["val_loss_raw"] for r in records)  # it won at least once
    model = api.load(str(result.run_dir))  # best: the winner's weights, in the model's layout
    run_ids = RunDir(result.run_dir).read_ids()
    from chargen.evaluate import evaluate_ids

    val_ids = run_ids[len(run_ids) - int(len(run_ids) * 0.1):]
    again = evaluate_ids(model.net, val_ids, model.config.data.seq_len, torch.device("cpu"))
    assert again.nats == pytest.approx(min(r["val_loss"] for r in records), rel=1e-5)


def test_resume_refuses_a_conflicting_model_flag(tmp_path):
    _train(tmp_path, max_steps=4)
    before = (tmp_path / "run" / LAST).read_bytes()
    with pytest.raises(ConfigError, match="--hidden-size"):
        api.train(resume=str(tmp_path / "run"), hidden_size=64, quiet=True)
    assert (tmp_path / "run" / LAST).read_bytes() == before


def test_an_existing_run_is_never_overwritten(tmp_path):
    _train(tmp_path, max_steps=2)
    config = (tmp_path / "run" / CONFIG).read_bytes()
    with pytest.raises(CheckpointError, match="already exists"):
        _train(tmp_path, max_steps=2)
    assert (tmp_path / "run" / CONFIG).read_bytes() == config


def test_default_run_directory_gets_a_fresh_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "book.txt").write_text(make_text(6000))
    first = api.train("book.txt", quiet=True, **tiny_settings(max_steps=2))
    second = api.train("book.txt", quiet=True, **tiny_settings(max_steps=2))
    assert first.run_dir.name == "book" and second.run_dir.name == "book-2"


class FakeClock:
    """A module's `time`, with a monotonic clock that moves `tick` seconds per reading."""

    def __init__(self, tick: float):
        self.now, self.tick = 0.0, tick

    def monotonic(self) -> float:
        self.now += self.tick
        return self.now

    perf_counter = monotonic


def test_max_time_stops_training_with_the_final_evaluation_inside_it(tmp_path, monkeypatch):
    from chargen import trainer as train

    clock = FakeClock(1.0)
    monkeypatch.setattr(train, "time", clock)
    evaluate = train.evaluate_ids

    def slow_evaluation(*args, **kwargs):  # an evaluation takes 50 s of the fake clock
        clock.now += 50
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(train, "evaluate_ids", slow_evaluation)
    result = _train(tmp_path, max_steps=None, max_time=1000, eval_every=10**6, log_every=1)
    records = RunDir(result.run_dir).read_metrics()
    assert sum("val_loss" in r for r in records) >= 2
    steps = [r["time"] for r in records if "train_loss" in r]
    evaluation = 50 + 1  # the fake cost and one tick of the clock around it
    # it stops at the first step after which the final evaluation would overrun the budget
    assert steps[-2] + evaluation < 1000 <= steps[-1] + evaluation


def test_a_time_budget_evaluates_at_every_tenth_of_it(tmp_path, monkeypatch):
    monkeypatch.setattr("chargen.trainer.time", FakeClock(1.0))
    result = _train(tmp_path, max_steps=None, max_time=100, eval_every=10**6)
    evaluations = [r["time"] for r in RunDir(result.run_dir).read_metrics() if "val_loss" in r]
    assert len(evaluations) >= 8  # 10% of 100 s, though eval_every never comes
    assert all(b - a <= 10 + 3 for a, b in zip(evaluations, evaluations[1:]))


def test_time_and_step_evaluations_do_not_crowd_each_other(tmp_path, monkeypatch):
    monkeypatch.setattr("chargen.trainer.time", FakeClock(1.0))
    result = _train(tmp_path, max_steps=None, max_time=300, eval_every=20, log_every=1)
    steps = [r["step"] for r in RunDir(result.run_dir).read_metrics() if "val_loss" in r]
    assert any(step % 20 for step in steps[:-1])  # some came from the time budget
    assert all(b - a >= 10 for a, b in zip(steps[:-2], steps[1:-1]))  # none 2 steps apart


def test_the_probe_counts_against_the_time_budget(tmp_path, monkeypatch):
    from chargen import autoconfig

    monkeypatch.setattr(autoconfig, "time", FakeClock(1000.0))  # a probe of 1000 s
    monkeypatch.setattr(autoconfig, "measured_speed",
                        lambda *a: (autoconfig.NOMINAL_CHARS_PER_S, autoconfig.COST_OVERHEAD))
    result = _train(tmp_path, max_steps=None, max_time=600, auto=True, hidden_size=None)
    meta = RunDir(result.run_dir).read_meta()
    assert meta["corpus"]["auto_config"]["probe_seconds"] == 1000.0
    assert result.steps == 1  # the budget was spent before training: one step, then stop


def test_wsd_holds_the_peak_then_decays_over_the_last_fifth():
    config = TrainConfig(schedule="wsd", warmup_steps=0, min_lr_ratio=0.1)
    assert lr_factor(0.0, 0, config) == lr_factor(0.8, 500, config) == 1.0
    assert lr_factor(0.9, 600, config) == pytest.approx(0.55)
    assert lr_factor(1.0, 700, config) == pytest.approx(0.1)


def test_a_plateau_brings_the_wsd_decay_forward():
    config = TrainConfig(schedule="wsd", warmup_steps=0, min_lr_ratio=0.1, patience=0.15)
    assert lr_factor(0.3, 300, config, decay_from=0.3) == 1.0
    assert lr_factor(0.4, 400, config, decay_from=0.3) == pytest.approx(0.55)
    assert lr_factor(0.7, 700, config, decay_from=0.3) == pytest.approx(0.1)  # over, held low
    assert decay_starts(0.36, 0.2, config) and not decay_starts(0.34, 0.2, config)
    assert not decay_starts(0.8, 0.2, config)  # the decay of the last fifth comes anyway
    for other in (dict(patience=0.0), dict(schedule="cosine"), dict(schedule="constant")):
        assert not decay_starts(0.5, 0.0, dataclasses.replace(config, **other))


def _stalled_validation(monkeypatch):
    """Every evaluation after the first scores a little worse than it: a validation plateau."""
    from chargen import trainer

    evaluate, scores = trainer.evaluate_ids, []

    def stalled(*args, **kwargs):
        result = evaluate(*args, **kwargs)
        scores.append(result.nats if not scores else scores[0] + 0.01 * len(scores))
        return dataclasses.replace(result, nats=scores[-1])

    monkeypatch.setattr(trainer, "evaluate_ids", stalled)


def test_a_stalled_run_decays_early_from_its_best_weights(tmp_path, monkeypatch, caplog):
    _stalled_validation(monkeypatch)
    from chargen import trainer

    restore_best, restored = trainer.restore_best, []

    def spy(run, config, model):  # the weights the decay starts from: the best ones on disk
        assert restore_best(run, config, model)
        best = load_file(str(run.file(BEST)))
        restored.append(all(torch.equal(v, best[k]) for k, v in model.state_dict().items()))
        return True

    monkeypatch.setattr(trainer, "restore_best", spy)
    (tmp_path / "corpus.txt").write_text(make_text(6000), encoding="utf-8")
    caplog.set_level(logging.INFO, logger="chargen")
    result = api.train(str(tmp_path / "corpus.txt"), str(tmp_path / "run"), **tiny_settings(
        max_steps=100, eval_every=5, schedule="wsd", patience=0.15, min_lr_ratio=0.1, log_every=1))
    lines = [r.getMessage() for r in caplog.records]
    assert any("from its weights the learning rate decays" in line for line in lines)
    assert restored == [True]
    assert f"step {result.steps}/{result.steps} " in "\n".join(lines)  # the progress knows
    records = RunDir(result.run_dir).read_metrics()
    start = next(r for r in records if "decay_from" in r)
    assert start["decay_from"] == pytest.approx(start["step"] / 100) and start["step"] >= 20
    assert result.steps == start["step"] + 20 < 100  # DECAY_SHARE of the budget, then stop
    lr = [r["lr"] for r in records if "lr" in r]
    assert lr[:start["step"]] == [lr[0]] * start["step"]  # the peak until the plateau
    assert lr[-1] < lr[0] * 0.11  # down to min_lr_ratio (0.1) by the last step
    assert all(b <= a for a, b in zip(lr[start["step"]:], lr[start["step"] + 1:]))
    with pytest.raises(ConfigError, match="--more"):  # it has ended: resuming says how to go on
        api.train(resume=str(result.run_dir), quiet=True)
    more = api.train(resume=str(result.run_dir), max_steps=200, quiet=True)  # judged afresh
    assert more.steps > result.steps


def test_patience_zero_trains_through_a_plateau(tmp_path, monkeypatch):
    _stalled_validation(monkeypatch)
    result = _train(tmp_path, max_steps=60, eval_every=5, schedule="wsd", patience=0.0)
    assert result.steps == 60
    assert not any("decay_from" in r for r in RunDir(result.run_dir).read_metrics())


def test_warmup_ends_by_a_twentieth_of_a_time_budget_on_a_slow_machine():
    config = TrainConfig(schedule="cosine", warmup_steps=100)
    assert lr_factor(0.0, 0, config) == pytest.approx(0.01)
    assert lr_factor(0.05, 9, config, time_used=0.05) == pytest.approx(1.0, rel=0.01)
    assert lr_factor(0.025, 9, config, time_used=0.025) == pytest.approx(0.5, rel=0.01)
    assert lr_factor(0.05, 9, config) == pytest.approx(0.1, rel=0.01)  # a step budget: steps
    assert lr_factor(0.5, 0, TrainConfig(schedule="cosine", warmup_steps=0)) == pytest.approx(0.525)


def test_epochs_set_the_step_count(tmp_path):
    result = _train(tmp_path, max_steps=None, epochs=1)
    from chargen.data import StreamBatches

    ids = RunDir(result.run_dir).read_ids()
    n_train = len(ids) - int(len(ids) * 0.1)
    assert result.steps == StreamBatches(ids[:n_train], 8, 32, 0).steps_per_epoch


def test_lr_schedule_warms_up_then_decays():
    config = TrainConfig(schedule="cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0.0, 0, config) == pytest.approx(0.1)
    assert lr_factor(0.0, 9, config) == pytest.approx(1.0)
    assert lr_factor(0.5, 100, config) == pytest.approx(0.55)
    assert lr_factor(1.0, 100, config) == pytest.approx(0.1)
    assert lr_factor(0.7, 100, TrainConfig(schedule="constant")) == 1.0


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", broken_fsync)
    with pytest.raises(Exception, match="No space left"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_an_unchanged_corpus_reuses_the_token_ids_of_a_sibling_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "book.txt").write_text(make_text(6000))
    first = api.train("book.txt", quiet=True, **tiny_settings(max_steps=2))

    def no_scan(*args, **kwargs):
        raise AssertionError("the corpus was tokenized again")

    with monkeypatch.context() as patch:
        patch.setattr(api, "scan", no_scan)
        second = api.train("book.txt", quiet=True, **tiny_settings(max_steps=2, hidden_size=16))
    a, b = RunDir(first.run_dir), RunDir(second.run_dir)
    assert (a.file("ids.npy").stat().st_ino == b.file("ids.npy").stat().st_ino
            or a.file("ids.npy").read_bytes() == b.file("ids.npy").read_bytes())
    assert a.read_tokenizer().chars == b.read_tokenizer().chars
    (tmp_path / "book.txt").write_text(make_text(6000, seed=9))  # changed: read it again
    third = api.train("book.txt", quiet=True, **tiny_settings(max_steps=2))
    assert not np.array_equal(RunDir(third.run_dir).read_ids(), a.read_ids())


@pytest.mark.parametrize("quiet", [False, True])
def test_the_api_shows_progress_without_logging_configured(tmp_path, quiet):
    """A script or notebook that never configured logging sees training progress on stderr,
    unless it asks for quiet; its stdout stays its own."""
    import subprocess
    import sys

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(3000), encoding="utf-8")
    settings = tiny_settings(max_steps=6, eval_every=3, log_every=2)
    code = (f"import chargen\nchargen.train({str(corpus)!r}, {str(tmp_path / 'run')!r}, "
            f"quiet={quiet}, **{settings!r})\nprint('done')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
    shown = "validation" in done.stderr and "step 2" in done.stderr
    assert shown != quiet


def test_more_trains_that_much_longer_than_the_run_has(tmp_path):
    first = _train(tmp_path, max_steps=4)
    run = RunDir(first.run_dir)
    trained = checkpoint_info(run.file(LAST))["progression"]["elapsed"]
    # the budget: the time the run has trained so far, and the more asked for
    assert time_budget(run, run.read_config(), None, "1s") == {"max_time": trained + 1.0}
    longer = api.train(resume=str(first.run_dir), more="1s", quiet=True)
    assert longer.steps > first.steps  # the run's step limit gave way to the time budget
    assert longer.elapsed > first.elapsed


def test_a_max_time_the_run_has_used_says_how_to_train_more(tmp_path):
    first = _train(tmp_path, max_steps=4)
    before = (first.run_dir / LAST).read_bytes()
    with pytest.raises(ConfigError, match="--more"):
        api.train(resume=str(first.run_dir), max_time=first.elapsed / 2, quiet=True)
    with pytest.raises(ConfigError, match="give one"):
        api.train(resume=str(first.run_dir), max_time=60, more=60, quiet=True)
    with pytest.raises(ConfigError, match="resume"):
        api.train(str(tmp_path / "corpus.txt"), str(tmp_path / "new"), more=60, quiet=True)
    assert (first.run_dir / LAST).read_bytes() == before


def test_progress_comes_at_least_every_few_seconds_whatever_log_every(tmp_path, monkeypatch):
    from chargen import trainer

    monkeypatch.setattr(trainer, "LOG_SECONDS", 0.0)  # every step is "a few seconds" later
    result = _train(tmp_path, max_steps=6, log_every=1000)
    steps = [r["step"] for r in RunDir(result.run_dir).read_metrics() if "train_loss" in r]
    assert steps == list(range(1, 7))


def test_a_preset_trains_its_recipe_with_keywords_on_top(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(3000), encoding="utf-8")
    result = api.train(str(corpus), str(tmp_path / "run"), quiet=True, preset="alice-small",
                       max_steps=2, batch_size=8, device="cpu")
    config = api.load(str(result.run_dir)).config
    assert config.model.input_encoding == "scalar" and config.data.lowercase  # the recipe
    assert config.data.batch_size == 8 and result.steps == 2  # the keywords on top
    assert "auto_config" not in api.run_info(str(result.run_dir))["corpus"]  # no auto choice
    with pytest.raises(ConfigError, match="unknown preset"):
        api.train(str(corpus), str(tmp_path / "other"), preset="nope", quiet=True)
    with pytest.raises(ConfigError, match="preset= starts a new run"):
        api.train(resume=str(result.run_dir), preset="alice-small", quiet=True)
