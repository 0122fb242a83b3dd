import json
import math

import pytest

from chargen import api
from chargen.autoconfig import AUTO_FIELDS, chars_limit, choose, probe_speed
from chargen.cli import main
from chargen.config import DataConfig, RunConfig, TrainConfig, preset

SHAKESPEARE, ALICE, SANGUO = 1_003_855, 129_988, 559_806  # training tokens (90%)


@pytest.mark.parametrize("tokens, vocab, budget, rate, size, strong", [
    (SHAKESPEARE, 66, 600, 18_000, (2, 256), True),
    (SHAKESPEARE, 66, 3600, 18_000, (2, 768), True),  # measured: 2x768 beat 2x512 here
    (SHAKESPEARE, 66, 180, 12_000, (1, 256), False),  # measured: 1x256 beat 2x256 here
    (ALICE, 72, 600, 18_000, (2, 256), True),  # a small corpus: strong regularisation
    (ALICE, 72, 3600, 18_000, (2, 256), True),  # measured: 2x384 stood still, 2x256 did not
    (SANGUO, 4157, 600, 11_000, (1, 256), False),  # a large vocabulary: one layer, no dropout
    (SHAKESPEARE, 66, 600, 1_000, (1, 256), False),  # a slow machine: the smallest
    (SHAKESPEARE, 66, 600, 80_000, (2, 512), True),  # a fast one: larger
])
def test_rule_table(tokens, vocab, budget, rate, size, strong):
    settings = choose(tokens, vocab, budget, rate).settings
    assert (settings["num_layers"], settings["hidden_size"]) == size
    assert settings.get("weight_drop", 0) > 0 if strong else "weight_drop" not in settings
    assert set(settings) <= set(AUTO_FIELDS)


def test_a_large_vocabulary_is_sized_by_all_its_parameters_and_not_dropped_out():
    chinese = choose(SANGUO, 4157, 600, 6_550).settings
    letters = choose(SANGUO, 66, 600, 6_550).settings
    assert chinese["dropout"] == 0.0 and letters["dropout"] > 0
    assert chinese["lr"] > TrainConfig().lr and "lr" not in letters
    assert chinese["hidden_size"] * chinese["num_layers"] <= letters["hidden_size"] * letters["num_layers"]


def test_a_large_vocabulary_gets_dropout_once_an_hour_would_memorise():
    """Measured on sanguo_yanyi (Zen 5, bf16): no dropout won at 10 minutes (pressure ~9) and
    memorised from minute 4 of 60 (pressure 119), where the medium tier did not."""
    ten, hour = (choose(SANGUO, 4157, budget, 9_721).settings for budget in (600, 3600))
    assert ten["dropout"] == 0.0 and "weight_drop" not in ten
    assert hour["dropout"] > 0 and hour["weight_drop"] > 0 and hour["lr"] == ten["lr"]


def test_rule_is_monotone_in_epochs():
    dropouts = [choose(SHAKESPEARE, 66, budget, 18_000, size=(2, 512)).settings["dropout"]
                for budget in (60, 600, 3600, 36_000)]
    assert dropouts == sorted(dropouts) and dropouts[0] < dropouts[-1]


def test_at_equal_epochs_a_larger_model_gets_the_stronger_regularisation():
    """Measured: at ~15 epochs a 1x256 lost to the medium tier, while a 2x768 memorised under
    it at 21 epochs: the tier follows epochs times parameters per token."""
    def tier(size):
        settings = choose(SHAKESPEARE, 66, math.inf, 18_000, size=size, max_chars=15e6).settings
        return settings["dropout"], settings.get("weight_drop", 0.0)

    small, large = tier((1, 256)), tier((2, 768))
    assert small < large and small[1] == 0.0


def test_an_hour_gets_the_larger_model_with_the_medium_tier():
    """Measured (60 minutes, bf16): 2x768 under medium, 1.4211 nats/char, beat 2x512 under
    strong, 1.4432, at the same memorisation pressure (~220)."""
    for probe, overhead in ((18_000, 300_000), (17_700, 30_078)):  # the nominal; that run's
        settings = choose(SHAKESPEARE, 66, 3597, probe, overhead=overhead).settings
        assert (settings["num_layers"], settings["hidden_size"]) == (2, 768)
        assert settings["weight_drop"] == 0.2 and settings["dropout"] == 0.3


def test_few_updates_in_a_time_budget_get_shorter_windows_and_a_step_limit_does_not():
    """Measured (10 minutes, AVX2 fp32, 2x256 at ~2,400 steps of 64 x 100): windows of 50
    reached 1.4613 nats/char against 1.4861 at 100 in the same run."""
    slow = choose(SHAKESPEARE, 66, 600, 7_000, overhead=100_000)
    fast = choose(SHAKESPEARE, 66, 3600, 18_000)
    assert slow.settings["seq_len"] == 50 and "windows of 50" in slow.reason
    assert "seq_len" not in fast.settings
    limited = choose(SHAKESPEARE, 66, math.inf, 7_000, max_chars=640_000).settings
    assert "seq_len" not in limited  # the user's steps stay steps of the window they know
    assert "seq_len" not in choose(SANGUO, 4157, 600, 6_550).settings  # not measured there


def test_fixed_size_chooses_only_the_rest():
    settings = choose(ALICE, 72, 600, 18_000, size=(1, 64)).settings
    assert "hidden_size" not in settings and "num_layers" not in settings
    assert "dropout" in settings


def test_step_and_epoch_limits_bound_the_characters_seen():
    assert chars_limit(TrainConfig(max_steps=100), DataConfig(), 10_000) == 640_000
    assert chars_limit(TrainConfig(max_steps=100, epochs=2), DataConfig(), 10_000) == 20_000
    assert chars_limit(TrainConfig(max_time=60.0), DataConfig(), 10_000) is None
    # a step limit: what the run sees does not depend on the machine's speed
    slow, fast = (choose(ALICE, 72, math.inf, rate, max_chars=640_000).settings
                  for rate in (1_000, 100_000))
    assert slow == fast and slow["dropout"] == 0.25  # ~5 epochs


def test_probe_measures_a_speed_and_leaves_the_random_state_alone():
    import torch

    before = torch.get_rng_state()
    assert probe_speed(11, batch_size=2, seq_len=4, device=torch.device("cpu"), dtype=None,
                       steps=1) > 0
    assert torch.equal(before, torch.get_rng_state())


@pytest.fixture
def no_probe(monkeypatch):
    monkeypatch.setenv("CHARGEN_NO_PROBE", "1")


def _train_cli(text_file, out, *flags):
    return main(["train", str(text_file), "--out", str(out), "--max-steps", "2", "--seq-len",
                 "16", "--embedding-dim", "8", "--device", "cpu", "--precision", "fp32",
                 "--eval-every", "2", *flags])


def test_cli_prints_and_stores_the_choice_and_explicit_flags_win(text_file, tmp_path, no_probe,
                                                                capsys):
    assert _train_cli(text_file, tmp_path / "run", "--hidden-size", "16", "--num-layers",
                      "1", "--dropout", "0.05") == 0
    err = capsys.readouterr().err
    assert "auto-config" in err and "because:" in err
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    model, data = meta["config"]["model"], meta["config"]["data"]
    assert (model["hidden_size"], model["num_layers"], model["dropout"]) == (16, 1, 0.05)
    chosen = meta["corpus"]["auto_config"]["chosen"]
    assert "hidden_size" not in chosen and "dropout" not in chosen
    assert chosen["batch_size"] == data["batch_size"] == 32  # a small corpus
    stored = {**model, **data}
    assert all(stored[name] == value for name, value in chosen.items())
    assert "weight_drop" not in chosen  # a 2-step run: no strong regularisation
    assert api.load(str(tmp_path / "run")).config.data.batch_size == 32


def test_no_auto_keeps_the_defaults(text_file, tmp_path, no_probe):
    assert _train_cli(text_file, tmp_path / "run", "--no-auto", "--hidden-size", "16",
                      "--batch-size", "4") == 0
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert "auto_config" not in meta["corpus"]
    assert meta["config"]["model"]["dropout"] == 0.25
    assert meta["config"]["model"]["weight_drop"] == 0.0


def test_a_preset_is_a_whole_recipe_and_is_not_auto_configured(text_file, tmp_path, no_probe,
                                                               capsys):
    assert _train_cli(text_file, tmp_path / "run", "--preset", "alice-small", "--epochs", "1",
                      "--max-steps", "2", "--window", "8") == 0
    assert "auto-config" not in capsys.readouterr().err
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    model = meta["config"]["model"]
    assert "auto_config" not in meta["corpus"]
    assert (model["locked_dropout"], model["weight_drop"], model["embedding_dropout"]) == (
        False, 0.0, 0.0)
    assert meta["config"]["data"]["batch_size"] == preset("alice-small")["batch_size"]


def test_the_api_auto_configures_as_the_cli_does(text_file, tmp_path, no_probe):
    common = dict(quiet=True, device="cpu", precision="fp32", max_steps=1, hidden_size=16,
                  num_layers=1, embedding_dim=8, seq_len=16)
    chosen = api.train(str(text_file), str(tmp_path / "auto"), **common)
    meta = json.loads((chosen.run_dir / "config.json").read_text())
    assert meta["corpus"]["auto_config"]["chosen"]["batch_size"] == 32  # a small corpus
    assert meta["config"]["model"]["hidden_size"] == 16  # what the caller gave stays
    off = api.train(str(text_file), str(tmp_path / "off"), auto=False, batch_size=4, **common)
    assert api.load(str(off.run_dir)).config.model.dropout == 0.25
    whole = RunConfig().with_overrides({**common, "quiet": None}).validate()
    kept = api.train(str(text_file), str(tmp_path / "whole"), config=whole, quiet=True)
    assert "auto_config" not in json.loads((kept.run_dir / "config.json").read_text())["corpus"]


def test_a_budget_too_short_for_words_says_so_and_what_would_do():
    short = choose(SHAKESPEARE, 66, 120, 2_000)  # a slow machine, 2 minutes
    assert "mostly not words" in short.warning and "--max-time" in short.warning
    needed = short.warning.split("--max-time ")[1].split()[0]
    assert needed.endswith("m") and int(needed[:-1]) > 2
    assert choose(SHAKESPEARE, 66, 600, 18_000).warning == ""
    assert choose(SHAKESPEARE, 66, math.inf, 2_000, max_chars=640_000).warning == ""


def test_the_probe_counts_against_the_time_budget(text_file, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CHARGEN_NO_PROBE", raising=False)
    assert _train_cli(text_file, tmp_path / "run", "--max-time", "30", "--hidden-size", "16",
                      "--num-layers", "1") == 0
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    probe = meta["corpus"]["auto_config"]["probe_seconds"]
    assert probe > 0
    assert "auto-config" in capsys.readouterr().err


def test_the_overhead_fitted_from_two_probed_speeds_is_the_one_that_made_them():
    from chargen.autoconfig import COST_OVERHEAD, REFERENCE, SMALL, fit_overhead
    from chargen.model import estimate_parameters

    big, small = (estimate_parameters(config, 66) for config in (REFERENCE, SMALL))
    for overhead in (0.0, 100_000.0, 300_000.0):
        work = 1e10  # chars/s x (parameters + overhead) is the machine's constant
        fitted = fit_overhead(66, work / (big + overhead), work / (small + overhead))
        assert fitted == pytest.approx(overhead, abs=1.0)
    assert fit_overhead(66, 5_000, 4_000) == COST_OVERHEAD  # the rates say nothing
    assert fit_overhead(66, 5_000, 5_001) == 4 * COST_OVERHEAD  # a wild probe is bounded


def test_a_machine_with_less_overhead_affords_a_larger_model_in_the_same_time():
    """The same reference speed, but small models relatively faster (fp32 on AVX2: the cost
    follows the parameters): the 10-minute choice on tiny Shakespeare grows."""
    lean = choose(1_003_855, 66, 592, 4_615, overhead=100_000).settings
    heavy = choose(1_003_855, 66, 592, 4_615, overhead=300_000).settings
    assert (lean["num_layers"], lean["hidden_size"]) > (heavy["num_layers"], heavy["hidden_size"])
