"""Frozen, typed settings for a run, their validation, and the named presets.

Precedence: defaults < preset < flags. Field names are unique across the three sections so
that flags map onto them one to one (`--hidden-size` -> ModelConfig.hidden_size).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ConfigError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelConfig:
    cell: str = "lstm"
    hidden_size: int = 512
    num_layers: int = 2
    embedding_dim: int = 64
    dropout: float = 0.25
    # Regularisation for small corpora (regularize.py); the defaults are the plain model.
    locked_dropout: bool = False  # one dropout mask per sequence, between layers and on output
    embedding_dropout: float = 0.0  # dropout on the embedded inputs
    weight_drop: float = 0.0  # DropConnect on the recurrent (weight_hh) matrices
    tie_weights: bool = False  # the output layer shares the embedding matrix
    # -- input encoding and direction (the tutorials' variants; see encoding.py) --
    input_encoding: str = "embedding"
    input_dropout: float = 0.0
    bidirectional: bool = False
    # Initial weights: PyTorch's defaults, or Keras's (the tutorials' framework; model.py).
    init: str = "torch"

    def validate(self) -> None:
        check_types(self)
        _choice("cell", self.cell, ("lstm", "gru"))
        _choice("init", self.init, ("torch", "keras"))
        _choice("input_encoding", self.input_encoding, ("embedding", "onehot", "scalar"))
        _fraction("input_dropout", self.input_dropout, upper_open=True)
        _positive("hidden_size", self.hidden_size, limit=16384)
        _positive("num_layers", self.num_layers, limit=64)
        _positive("embedding_dim", self.embedding_dim, limit=16384)
        _fraction("dropout", self.dropout, upper_open=True)
        _fraction("embedding_dropout", self.embedding_dropout, upper_open=True)
        _fraction("weight_drop", self.weight_drop, upper_open=True)
        if self.tie_weights and self.embedding_dim != self.hidden_size:
            raise ConfigError(f"--tie-weights needs --embedding-dim equal to --hidden-size (got "
                              f"{self.embedding_dim} and {self.hidden_size}); pass --embedding-dim "
                              f"{self.hidden_size} or drop --tie-weights")


@dataclass(frozen=True)
class DataConfig:
    tokenizer: str = "char"
    encoding: str = "utf-8"
    normalize_newlines: bool = True
    strip_gutenberg: bool = True
    lowercase: bool = False
    val_fraction: float = 0.1
    seq_len: int = 100
    batch_size: int = 64
    batching: str = "stream"
    # -- word level and punctuation --
    strip_punctuation: bool = False
    min_count: int = 1  # word tokens seen fewer times become [UNK]
    max_vocab: int = 0  # keep at most this many word tokens, the most frequent (0: no limit)
    seq_len_jitter: float = 0.0  # stream batching: BPTT length varies in seq_len * (1 +- this)
    # -- window framings (batching window | variable-window | prefix; see framing.py) --
    window: int = 100
    window_layout: str = "time-steps"
    # -- document mode (batching documents; see documents.py) --
    document_unit: str = "line"  # each line, sentence or paragraph is one sequence

    def validate(self) -> None:
        check_types(self)
        _choice("tokenizer", self.tokenizer, ("char", "byte", "word"))
        check_encoding(self.encoding)
        _positive("min_count", self.min_count)
        _non_negative("max_vocab", self.max_vocab)
        if self.tokenizer != "word" and (self.min_count != 1 or self.max_vocab != 0):
            raise ConfigError("--min-count and --max-vocab shape a word vocabulary: add "
                              "--tokenizer word, or drop them")
        _choice("batching", self.batching, BATCHINGS)
        _choice("window_layout", self.window_layout, ("time-steps", "features"))
        _positive("window", self.window, limit=100_000)
        _fraction("val_fraction", self.val_fraction, upper_open=True)
        _positive("seq_len", self.seq_len, limit=1_000_000)
        _positive("batch_size", self.batch_size, limit=1_000_000)
        _fraction("seq_len_jitter", self.seq_len_jitter, upper_open=True)
        if self.seq_len_jitter and self.batching != "stream":
            raise ConfigError("--seq-len-jitter works with --batching stream only; drop it or use "
                              "stream batching")
        self._validate_documents()

    def _validate_documents(self) -> None:
        _choice("document_unit", self.document_unit, ("line", "sentence", "paragraph"))
        if self.document_unit != "line" and self.batching != "documents":
            raise ConfigError(f"--document-unit {self.document_unit} needs --batching documents; "
                              "add it, or drop --document-unit")


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "adamw"
    # 4e-3 against 2e-3 in 3 minutes on tiny Shakespeare: 1.4822 vs 1.5428 (1x256, AVX2 fp32),
    # 1.4490 vs 1.5239 (2x512, bf16): benchmarks/RESULTS.md, "Recipe at an equal model"
    lr: float = 4e-3
    weight_decay: float = 0.01
    schedule: str = "wsd"  # benchmarks/RESULTS.md: 1.5428 vs cosine's 1.6086 in 3 minutes
    warmup_steps: int = 10  # 100 cost 0.03 nats/char there: the first plateau lasts longer
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    max_steps: int | None = None
    max_time: float | None = None
    epochs: float | None = None
    eval_every: int = 200
    eval_chars: int = 1_000_000
    log_every: int = 50
    seed: int = 1234
    device: str = "auto"
    precision: str = "auto"
    threads: int = 0  # CPU threads; 0: the free cores, followed while training (threads.py)
    on_divergence: str = "stop"
    freeze_layers: int = 0
    # Watching a run (watch.py). sample_every: steps between samples written to samples.jsonl;
    # None samples at each evaluation, 0 never.
    sample_every: int | None = None
    sample_length: int = 200
    tensorboard: bool = False
    keep: str = "val-loss"  # which weights best.safetensors holds: best validation or training loss

    def validate(self) -> None:
        check_types(self)
        self._validate_watching()
        _choice("optimizer", self.optimizer, ("adamw", "adam"))
        _choice("keep", self.keep, ("val-loss", "train-loss"))
        _choice("on_divergence", self.on_divergence, ("stop", "rollback"))
        _non_negative("freeze_layers", self.freeze_layers)
        _choice("schedule", self.schedule, ("cosine", "wsd", "constant"))
        _choice("precision", self.precision, ("auto", "fp32", "bf16", "fp16"))
        _positive("lr", self.lr, limit=10.0)
        _non_negative("weight_decay", self.weight_decay)
        _non_negative("warmup_steps", self.warmup_steps)
        _fraction("min_lr_ratio", self.min_lr_ratio)
        _non_negative("grad_clip", self.grad_clip)
        for name in ("max_steps", "max_time", "epochs"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        _positive("eval_every", self.eval_every)
        _positive("eval_chars", self.eval_chars)
        _positive("log_every", self.log_every)
        check_whole("seed", self.seed, limit=SEED_LIMIT)
        check_whole("threads", self.threads, limit=1024)
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", str(self.device)):
            raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N (got {self.device!r})")

    def _validate_watching(self) -> None:
        every = self.sample_every
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 0):
            raise ConfigError(f"--sample-every must be a whole number of steps, 0 for never (got {every})")
        _positive("sample_length", self.sample_length, limit=100_000)


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> RunConfig:
        self.model.validate()
        self.data.validate()
        self.train.validate()
        _check_combinations(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        sections = {}
        for section in fields(cls):
            values = raw.get(section.name, {})
            section_type = section.default_factory
            known = {f.name for f in fields(section_type)}
            unknown = set(values) - known
            if unknown:
                raise ConfigError(f"unknown {section.name} setting(s): {', '.join(sorted(unknown))}")
            sections[section.name] = section_type(**values)
        return cls(**sections)

    def with_overrides(self, overrides: dict[str, Any]) -> RunConfig:
        """Apply flat {field: value} overrides; None values mean 'not given'."""
        remaining = {k: v for k, v in overrides.items() if v is not None}
        sections = {}
        for section in fields(self):
            current = getattr(self, section.name)
            names = {f.name for f in fields(current)}
            mine = {k: remaining.pop(k) for k in list(remaining) if k in names}
            sections[section.name] = dataclasses.replace(current, **mine)
        if remaining:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(remaining))}")
        return RunConfig(**sections)


WINDOWED = ("window", "variable-window", "prefix")
BATCHINGS = ("stream", "sequences", *WINDOWED, "documents")


def _check_combinations(config: RunConfig) -> None:
    """Settings that are valid alone but not together."""
    model, data, train = config.model, config.data, config.train
    if model.bidirectional and data.batching not in WINDOWED:
        raise ConfigError(
            f"--bidirectional needs a window framing (--batching {', '.join(WINDOWED)}): with "
            f"--batching {data.batching} the backward direction would read the very characters "
            "the model must predict")
    if data.window_layout == "features" and (data.batching not in WINDOWED
                                             or model.input_encoding == "embedding"):
        raise ConfigError(
            "--window-layout features (the window as one time step) needs a window framing "
            "(--batching window, variable-window or prefix) and --input-encoding scalar or onehot")
    if model.tie_weights and (model.input_encoding != "embedding" or model.bidirectional
                              or data.batching in WINDOWED):
        raise ConfigError("--tie-weights shares the input embedding with the output layer: it needs "
                          "--input-encoding embedding, no --bidirectional and --batching stream or "
                          "sequences; drop --tie-weights or those settings")
    if data.val_fraction == 0 and train.keep != "train-loss":
        raise ConfigError("--val-fraction 0 leaves no validation text to choose the best weights"
                          " by; add --keep train-loss or give a --val-fraction above 0")


@dataclass(frozen=True)
class SampleConfig:
    length: int = 500
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num: int = 1
    greedy: bool = False
    seed: int | None = None
    unknown: str = "error"
    precision: str = "auto"
    stop: tuple[str, ...] = ()
    repetition_penalty: float = 1.0
    # -- beam search --
    beam: int = 0  # beams searched for the likeliest continuation (0: sample instead)
    length_norm: bool = False  # rank finished beams by log-probability per token

    def validate(self) -> SampleConfig:
        check_types(self)
        self._validate_beam()
        _within("repetition_penalty", self.repetition_penalty, *SCALE_RANGE,
                hint="1 means none, 1.2 is a usual value")
        _choice("unknown", self.unknown, ("error", "replace", "skip"))
        _choice("precision", self.precision, ("auto", "fp32", "int8"))
        _non_negative("length", self.length)
        _non_negative("top_k", self.top_k)
        _positive("num", self.num, limit=4096)
        if self.seed is not None:
            check_whole("seed", self.seed, limit=SEED_LIMIT)
        if self.temperature != 0:
            _within("temperature", self.temperature, *SCALE_RANGE, hint="0 means greedy")
        if not _is_number(self.top_p) or not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p must be in (0, 1] (got {self.top_p})")
        return self

    def _validate_beam(self) -> None:
        _non_negative("beam", self.beam)
        if not isinstance(self.beam, int) or self.beam > 1024:
            raise ConfigError(f"--beam must be a whole number up to 1024 (got {self.beam})")
        if not self.beam:
            return
        sampling = [flag for flag, is_set in (
            ("--temperature", self.temperature != 1.0), ("--top-k", self.top_k != 0),
            ("--top-p", self.top_p != 1.0), ("--greedy", self.greedy)) if is_set]
        if sampling:
            raise ConfigError(f"--beam searches for the likeliest text and takes no sampling "
                              f"setting: drop {', '.join(sampling)}")
        if self.num > self.beam:
            raise ConfigError(f"--num {self.num} is more than --beam {self.beam}: beam search "
                              "keeps at most --beam continuations")


# Presets: flat overrides of RunConfig fields. The tutorial recipes (SEEDS.md) set every field
# that shapes the result, so that `chargen presets` shows the whole recipe.
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


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h|hr)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '1.5h' -> seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise ConfigError(f"--max-time must be a duration like 90s, 10m or 1.5h (got {text!r})")
    unit = match.group(2).lower() if match.group(2) else None
    seconds = float(match.group(1)) * _UNIT_SECONDS[unit]
    if seconds <= 0:
        raise ConfigError(f"--max-time must be more than zero (got {text!r})")
    return seconds


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# Seeds go to torch's generators, which take a signed 64-bit integer.
SEED_LIMIT = 2**63 - 1
# Temperature and repetition penalty divide or multiply float32 logits: inside this range no
# row can overflow to inf or underflow to a uniform draw (which would be a silent wrong result).
SCALE_RANGE = (1e-3, 1e3)


def check_types(settings: Any) -> None:
    """Every field of a settings dataclass holds its annotated type: whole numbers where the
    field is an int (64.0 is refused), finite numbers where it is a float, true/false, text.
    One pass for flags, the API, config files and the server alike."""
    for name, kind in _field_types(type(settings)).items():
        value = getattr(settings, name)
        optional = kind.endswith(" | None")
        if optional and value is None:
            continue
        problem = _type_problem(kind.removesuffix(" | None"), value)
        if problem:
            raise ConfigError(f"{_flag(name)} must be {problem} (got {value!r})")


_TYPE_CACHE: dict[type, dict[str, str]] = {}


def _field_types(cls: type) -> dict[str, str]:
    if cls not in _TYPE_CACHE:  # annotations are strings here (from __future__ import annotations)
        _TYPE_CACHE[cls] = {f.name: str(f.type) for f in fields(cls)}
    return _TYPE_CACHE[cls]


def _type_problem(kind: str, value: Any) -> str | None:
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        return "a whole number"
    if kind == "float" and not _is_number(value):
        return "a finite number"
    if kind == "bool" and not isinstance(value, bool):
        return "true or false"
    if kind == "str" and not isinstance(value, str):
        return "text"
    if kind.startswith("tuple[str") and not (isinstance(value, (tuple, list))
                                             and all(isinstance(v, str) for v in value)):
        return "a list of text"
    return None


def check_encoding(name: Any) -> None:
    """A codec that turns bytes into text (rot13 and base64 are codecs, but not text ones)."""
    try:
        "x".encode(name)  # an empty string would pass: Python skips the codec for it
    except UnicodeError:
        pass
    except (LookupError, TypeError):
        raise ConfigError(f"--encoding {name!r} is not a text encoding Python knows; use one such "
                          "as utf-8, utf-16, latin-1 or cp1252") from None


def _within(name: str, value: Any, low: float, high: float, hint: str = "") -> None:
    if not _is_number(value) or not low <= value <= high:
        hint = f"; {hint}" if hint else ""
        raise ConfigError(f"{_flag(name)} must be from {low:g} to {high:g} (got {value}){hint}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{_flag(name)} must be one of {', '.join(choices)} (got {value!r})")


def _finite(name: str, value: Any) -> None:
    if not _is_number(value):
        raise ConfigError(f"{_flag(name)} must be a finite number (got {value!r})")


def _positive(name: str, value: Any, limit: float | None = None) -> None:
    _finite(name, value)
    if value <= 0:
        raise ConfigError(f"{_flag(name)} must be more than zero (got {value})")
    if limit is not None and value > limit:
        raise ConfigError(f"{_flag(name)} is too large (got {value}, at most {limit:g})")


def check_whole(name: str, value: Any, limit: int) -> None:
    """A whole number from 0 to `limit`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise ConfigError(f"{_flag(name)} must be a whole number from 0 to {limit} (got {value!r})")


def _non_negative(name: str, value: Any) -> None:
    _finite(name, value)
    if value < 0:
        raise ConfigError(f"{_flag(name)} must be zero or more (got {value})")


def _fraction(name: str, value: Any, upper_open=False, lower_open=False) -> None:
    ok = _is_number(value) and (value > 0 if lower_open else value >= 0)
    ok = ok and (value < 1 if upper_open else value <= 1)
    if not ok:
        low, high = "(" if lower_open else "[", ")" if upper_open else "]"
        raise ConfigError(f"{_flag(name)} must be in {low}0, 1{high} (got {value})")


_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text: str, name: str = "size") -> int:
    """'512M', '2G', '1.5GB', '1000' -> bytes."""
    match = _SIZE.match(str(text))
    if not match:
        raise ConfigError(f"{name} must be a size like 512M or 2G (got {text!r})")
    power = " kmgt".index(match.group(2).lower() or " ")
    return int(float(match.group(1)) * 1024**power)
