"""Named presets: flat overrides of RunConfig fields. The tutorial recipes (SEEDS.md) set every
field that shapes the result, so that `chargen presets` shows the whole recipe."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError

PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "tiny": {
        "hidden_size": 32,
        "num_layers": 1,
        "embedding_dim": 16,
        "dropout": 0.0,
        "seq_len": 32,
        "batch_size": 8,
        "max_steps": 20,
        "eval_every": 10,
        "warmup_steps": 0,
    },
}

# Keras's defaults, as the tutorials trained: Adam at a constant 1e-3, no weight decay, no
# clipping, no warmup, float32 (fp32 rather than auto so the loss figures compare with theirs).
_KERAS_TRAINING = {
    "optimizer": "adam", "lr": 1e-3, "schedule": "constant", "warmup_steps": 0,
    "weight_decay": 0.0, "grad_clip": 0.0, "precision": "fp32", "seed": 1234,
}
_ALICE = {  # tutorial B: 100-character windows of lowercased Alice, id / vocab as the input
    "tokenizer": "char", "encoding": "utf-8", "normalize_newlines": True,
    "strip_gutenberg": True, "lowercase": True, "batching": "window", "window": 100,
    "window_layout": "time-steps", "seq_len": 100, "input_encoding": "scalar",
    "input_dropout": 0.0, "bidirectional": False, "cell": "lstm",
    "hidden_size": 256, "dropout": 0.2, "val_fraction": 0.0, "keep": "train-loss",
    "eval_every": 500, **_KERAS_TRAINING,
}
PRESETS.update({
    "alice-small": {**_ALICE, "num_layers": 1, "batch_size": 128, "epochs": 20},
    "alice-large": {**_ALICE, "num_layers": 2, "batch_size": 64, "epochs": 50},
    "shakespeare-gru": {  # tutorial C: full sequences of 100, embedding 256 -> GRU 1024
        "tokenizer": "char", "encoding": "utf-8", "normalize_newlines": True,
        "strip_gutenberg": False, "lowercase": False, "batching": "sequences", "seq_len": 100,
        "window": 100, "window_layout": "time-steps", "input_encoding": "embedding",
        "embedding_dim": 256, "input_dropout": 0.0, "bidirectional": False, "cell": "gru",
        "hidden_size": 1024, "num_layers": 1, "dropout": 0.0, "batch_size": 64, "epochs": 10,
        "val_fraction": 0.0, "keep": "train-loss", "eval_every": 100, **_KERAS_TRAINING,
    },
    "chinese-lstm": {  # tutorial D: every prefix, left-padded; embedding 64 -> LSTM 128
        "tokenizer": "char", "encoding": "utf-8", "normalize_newlines": True,
        "strip_gutenberg": False, "lowercase": False, "batching": "prefix", "window": 128,
        "window_layout": "time-steps", "seq_len": 100, "input_encoding": "embedding",
        "embedding_dim": 64, "input_dropout": 0.0, "bidirectional": False, "cell": "lstm",
        "hidden_size": 128, "num_layers": 1, "dropout": 0.0, "batch_size": 32, "epochs": 200,
        "val_fraction": 0.0, "keep": "train-loss", "eval_every": 500, **_KERAS_TRAINING,
    },
})
PRESET_NOTES = {
    "alice-small": "tutorial B small: LSTM(256), 100-char windows, scalar input, 20 epochs",
    "alice-large": "tutorial B large: 2 x LSTM(256), dropout 0.2, batch 64, 50 epochs",
    "shakespeare-gru": "tutorial C: embedding 256 -> GRU(1024), sequences of 100, 10 epochs",
    "chinese-lstm": "tutorial D: embedding 64 -> LSTM(128), every prefix (up to 128), 200 epochs",
}


def preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return dict(PRESETS[name])


