"""A run's settings: the model, the text and its batches, the training. Frozen and typed; each
field declared once with its command-line help (fields.setting).

Precedence: defaults < preset < flags. Field names are unique across the three sections so
that flags map onto them one to one (`--hidden-size` -> ModelConfig.hidden_size).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import ConfigError
from .checks import (
    SEED_LIMIT,
    check_encoding,
    check_types,
    check_whole,
    choice,
    fraction,
    non_negative,
    positive,
)
from .fields import choices_of, setting

FORMAT_VERSION = 1
WINDOWED = ("window", "variable-window", "prefix")
BATCHINGS = ("stream", "sequences", *WINDOWED, "documents")


def _choices(settings: Any, *names: str) -> None:
    for name in names:
        choice(name, getattr(settings, name), choices_of(type(settings), name))


@dataclass(frozen=True)
class ModelConfig:
    cell: str = setting("lstm", choices=("lstm", "gru"))
    hidden_size: int = setting(512, metavar="N")
    num_layers: int = setting(2, metavar="N", aliases=("--layers",))
    embedding_dim: int = setting(64, metavar="N")
    dropout: float = setting(0.25, metavar="P")
    # Regularisation for small corpora (regularize.py); the defaults are the plain model.
    locked_dropout: bool = setting(False, switches={"--locked-dropout": (True, (
        "one dropout mask per sequence (the same at every step) between layers and on the "
        "output"))})
    embedding_dropout: float = setting(0.0, metavar="P",
                                       help="dropout on the embedded inputs (default 0)")
    weight_drop: float = setting(0.0, metavar="P", help="DropConnect on the recurrent weights, "
                                                        "AWD-LSTM style (default 0)")
    tie_weights: bool = setting(False, switches={"--tie-weights": (True, (
        "share the embedding with the output layer (needs --embedding-dim equal to "
        "--hidden-size)"))})
    # -- input encoding and direction (the tutorials' variants; see encoding.py) --
    input_encoding: str = setting("embedding", choices=("embedding", "onehot", "scalar"),
                                  help="embedding (default), one-hot, or scalar: id / vocabulary "
                                       "size")
    input_dropout: float = setting(0.0, metavar="P", help=(
        "dropout on the input features, element by element, as a Keras Dropout layer before "
        "the LSTM (default 0; --embedding-dropout is the same, but one mask per sequence with "
        "--locked-dropout)"))
    bidirectional: bool = setting(False, switches={
        "--bidirectional": (True, "read the window both ways (window framings only)"),
        "--no-bidirectional": (False, "read the window forwards only (the default)")})
    # Initial weights: PyTorch's defaults, or Keras's (the tutorials' framework; model.py).
    init: str = setting("torch", choices=("torch", "keras"), help=(
        "initial weights: PyTorch's (default) or Keras 1's, as the tutorials trained "
        "(glorot-uniform and orthogonal per gate, forget bias 1)"))

    def validate(self) -> None:
        check_types(self)
        _choices(self, "cell", "init", "input_encoding")
        fraction("input_dropout", self.input_dropout, upper_open=True)
        positive("hidden_size", self.hidden_size, limit=16384)
        positive("num_layers", self.num_layers, limit=64)
        positive("embedding_dim", self.embedding_dim, limit=16384)
        for name in ("dropout", "embedding_dropout", "weight_drop"):
            fraction(name, getattr(self, name), upper_open=True)
        if self.tie_weights and self.embedding_dim != self.hidden_size:
            raise ConfigError(f"--tie-weights needs --embedding-dim equal to --hidden-size (got "
                              f"{self.embedding_dim} and {self.hidden_size}); pass --embedding-dim "
                              f"{self.hidden_size} or drop --tie-weights")


@dataclass(frozen=True)
class DataConfig:
    tokenizer: str = setting("char", choices=("char", "byte", "word"), help=(
        "char (default), byte (UTF-8 bytes) or word (words, punctuation and whitespace runs)"))
    encoding: str = setting("utf-8", help="text encoding of the corpus files (default utf-8)")
    normalize_newlines: bool = setting(True, switches={"--keep-crlf": (
        False, "keep CR/CRLF line ends instead of turning them into LF")})
    strip_gutenberg: bool = setting(True, switches={"--keep-gutenberg": (
        False, "keep Project Gutenberg headers and footers")})
    lowercase: bool = setting(False, switches={
        "--lowercase": (True, "lowercase the text"),
        "--keep-case": (False, "do not lowercase (undoes a preset's --lowercase)")})
    val_fraction: float = setting(0.1, metavar="F", help="last fraction of the text held out for "
                                                         "validation (default 0.1)")
    seq_len: int = setting(100, metavar="N")
    batch_size: int = setting(64, metavar="N")
    batching: str = setting("stream", choices=BATCHINGS, help=(
        "stream: contiguous streams, state carried (default); sequences: shuffled independent "
        "sequences; window, variable-window, prefix: the tutorials' windows -> next character "
        "(see --window); documents: each line/sentence/paragraph on its own (--document-unit)"))
    # -- word level and punctuation --
    strip_punctuation: bool = setting(False, switches={"--strip-punctuation": (True, (
        "remove Unicode punctuation from the corpus (letters, digits, symbols and whitespace "
        "stay)"))})
    min_count: int = setting(1, metavar="N", help="word level: tokens seen fewer than N times "
                                                  "become [UNK] (default 1)")
    max_vocab: int = setting(0, metavar="N", help="word level: keep the N most frequent tokens, "
                                                  "the rest are [UNK] (default 0: all)")
    seq_len_jitter: float = setting(0.0, metavar="F", help=(
        "vary the BPTT length of each step in seq-len * (1 +- F), stream batching only "
        "(default 0)"))
    # -- window framings (batching window | variable-window | prefix; see framing.py) --
    window: int = setting(100, metavar="N", help="ids before each predicted one, for the window "
                                                 "framings (default 100)")
    window_layout: str = setting("time-steps", choices=("time-steps", "features"), help=(
        "the window as time steps (default) or as the features of one step"))
    # -- document mode (batching documents; see documents.py) --
    document_unit: str = setting("line", choices=("line", "sentence", "paragraph"), help=(
        "with --batching documents: each line (default), sentence or paragraph (blank-line "
        "separated) is one sequence, [start] ... [end]"))

    def validate(self) -> None:
        check_types(self)
        _choices(self, "tokenizer", "batching", "window_layout", "document_unit")
        check_encoding(self.encoding)
        positive("min_count", self.min_count)
        non_negative("max_vocab", self.max_vocab)
        if self.tokenizer != "word" and (self.min_count != 1 or self.max_vocab != 0):
            raise ConfigError("--min-count and --max-vocab shape a word vocabulary: add "
                              "--tokenizer word, or drop them")
        positive("window", self.window, limit=100_000)
        fraction("val_fraction", self.val_fraction, upper_open=True)
        positive("seq_len", self.seq_len, limit=1_000_000)
        positive("batch_size", self.batch_size, limit=1_000_000)
        fraction("seq_len_jitter", self.seq_len_jitter, upper_open=True)
        if self.seq_len_jitter and self.batching != "stream":
            raise ConfigError("--seq-len-jitter works with --batching stream only; drop it or use "
                              "stream batching")
        if self.document_unit != "line" and self.batching != "documents":
            raise ConfigError(f"--document-unit {self.document_unit} needs --batching documents; "
                              "add it, or drop --document-unit")


WATCHING = "watching the run"


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = setting("adamw", choices=("adamw", "adam"))
    # 4e-3 against 2e-3 in 3 minutes on tiny Shakespeare: 1.4822 vs 1.5428 (1x256, AVX2 fp32),
    # 1.4490 vs 1.5239 (2x512, bf16): benchmarks/RESULTS.md, "Recipe at an equal model"
    lr: float = setting(4e-3, metavar="LR")
    weight_decay: float = setting(0.01, metavar="W")
    # benchmarks/RESULTS.md: wsd 1.5428 against cosine's 1.6086 in 3 minutes
    schedule: str = setting("wsd", choices=("cosine", "wsd", "constant"), help=(
        "after warmup: cosine to --min-lr-ratio over the budget; wsd: the peak until the last "
        "20%%, then that cosine; constant"))
    patience: float = setting(0.15, metavar="SHARE", help=(
        "schedule wsd: when the validation loss has not improved for this share of the budget, "
        "start the decay now from the best weights, and end the run after it (default 0.15; 0: "
        "never)"))
    warmup_steps: int = setting(10, metavar="N")  # 100 cost 0.03 nats/char: the plateau lasts
    min_lr_ratio: float = setting(0.05, metavar="R")
    grad_clip: float = setting(1.0, metavar="NORM")
    ema: float = setting(0.0, metavar="DECAY", help=(
        "also keep an exponential moving average of the weights with this decay (e.g. 0.998; "
        "0: none), evaluated beside them; the best weights are whichever scored lower"))
    max_steps: int | None = setting(None, metavar="N")
    max_time: float | None = setting(None, metavar="TIME", parse="duration", help=(
        "training time budget, e.g. 90s, 10m, 1.5h (default 10m when no other limit is given)"))
    epochs: float | None = setting(None, metavar="N")
    eval_every: int = setting(200, metavar="STEPS")
    eval_chars: int = setting(1_000_000, metavar="N", help="validation tokens used by each "
                                                           "evaluation (default 1,000,000)")
    log_every: int = setting(50, metavar="STEPS", help=(
        "a progress line every STEPS steps, and at least every 5 seconds (default 50)"))
    seed: int = setting(1234)
    device: str = setting("auto", help="auto (default: cuda, then mps, then cpu), cpu, cuda, "
                                       "cuda:N or mps")
    precision: str = setting("auto", choices=("auto", "fp32", "bf16", "fp16"), help=(
        "auto: bf16 autocast where the hardware runs it fast, else fp32"))
    threads: int = setting(0, metavar="N", help=(
        "CPU threads (default 0: as many as there are free cores, followed while training; "
        "OMP_NUM_THREADS also fixes the count)"))
    on_divergence: str = setting("stop", choices=("stop", "rollback"), help=(
        "when the loss becomes NaN or explodes: stop (default), or roll back to the last "
        "checkpoint with half the learning rate (up to 3 times)"))
    freeze_layers: int = setting(0, metavar="K", group="fine-tuning", help=(
        "keep the embedding and the first K recurrent layers fixed"))
    # Watching a run (watch.py).
    sample_every: int | None = setting(None, metavar="STEPS", group=WATCHING, help=(
        "write a short sample to samples.jsonl (and show it) every STEPS steps (default: at "
        "each evaluation; 0: never)"))
    sample_length: int = setting(200, metavar="N", group=WATCHING,
                                 help="characters in each such sample (default 200)")
    tensorboard: bool = setting(False, group=WATCHING, switches={
        "--tensorboard": (True, "also log to RUN/tensorboard/ (pip install "
                                "'chargen[tensorboard]')"),
        "--no-tensorboard": (False, "no TensorBoard log (the default)")})
    keep: str = setting("val-loss", choices=("val-loss", "train-loss"), help=(
        "best weights by validation loss (default) or by the epoch's training loss (the "
        "tutorials'; allows --val-fraction 0)"))

    def validate(self) -> None:
        check_types(self)
        self._validate_watching()
        _choices(self, "optimizer", "keep", "on_divergence", "schedule", "precision")
        non_negative("freeze_layers", self.freeze_layers)
        positive("lr", self.lr, limit=10.0)
        for name in ("weight_decay", "warmup_steps", "grad_clip"):
            non_negative(name, getattr(self, name))
        fraction("min_lr_ratio", self.min_lr_ratio)
        fraction("patience", self.patience)
        fraction("ema", self.ema, upper_open=True)
        for name in ("max_steps", "max_time", "epochs"):
            if getattr(self, name) is not None:
                positive(name, getattr(self, name))
        for name in ("eval_every", "eval_chars", "log_every"):
            positive(name, getattr(self, name))
        check_whole("seed", self.seed, limit=SEED_LIMIT)
        check_whole("threads", self.threads, limit=1024)
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", str(self.device)):
            raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N (got {self.device!r})")

    def _validate_watching(self) -> None:
        every = self.sample_every
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 0):
            raise ConfigError(f"--sample-every must be a whole number of steps, 0 for never (got {every})")
        positive("sample_length", self.sample_length, limit=100_000)


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
