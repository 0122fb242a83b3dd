import math

import pytest

from chargen.config import PRESETS, RunConfig, parse_duration, preset
from chargen.errors import ConfigError


def test_defaults_validate_and_round_trip_through_dict():
    config = RunConfig().validate()
    assert RunConfig.from_dict(config.to_dict()) == config


def test_overrides_land_in_their_section():
    config = RunConfig().with_overrides({"hidden_size": 128, "seq_len": 50, "lr": 0.01,
                                         "epochs": None})
    assert config.model.hidden_size == 128
    assert config.data.seq_len == 50
    assert config.train.lr == 0.01
    assert config.train.epochs is None


def test_unknown_settings_are_refused():
    with pytest.raises(ConfigError, match="hidden_sise"):
        RunConfig().with_overrides({"hidden_sise": 3})
    with pytest.raises(ConfigError, match="colour"):
        RunConfig.from_dict({"model": {"colour": "red"}})


@pytest.mark.parametrize("name, value, flag", [
    ("hidden_size", 0, "--hidden-size"),
    ("hidden_size", -4, "--hidden-size"),
    ("num_layers", 0, "--num-layers"),
    ("seq_len", 0, "--seq-len"),
    ("batch_size", -1, "--batch-size"),
    ("dropout", 1.0, "--dropout"),
    ("lr", math.nan, "--lr"),
    ("lr", -1e-3, "--lr"),
    ("val_fraction", 0.0, "--val-fraction"),
    ("max_steps", 0, "--max-steps"),
    ("epochs", -1.0, "--epochs"),
    ("cell", "transformer", "--cell"),
    ("hidden_size", 10**9, "--hidden-size"),
    ("device", "tpu", "--device"),
    ("threads", -1, "--threads"),
    ("threads", 1.5, "--threads"),
    ("threads", 4096, "--threads"),
])
def test_invalid_values_name_their_flag(name, value, flag):
    with pytest.raises(ConfigError, match=flag):
        RunConfig().with_overrides({name: value}).validate()


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("10m", 600),
                                           ("1.5h", 5400), (" 2 min ", 120)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "-5m", "0", "5d"])
def test_bad_durations(text):
    with pytest.raises(ConfigError, match="--max-time"):
        parse_duration(text)


def test_presets_are_valid_overrides():
    for name in PRESETS:
        RunConfig().with_overrides(preset(name)).validate()
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("nope")
