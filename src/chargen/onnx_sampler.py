"""Generation from an ONNX export through onnxruntime and numpy: nothing here imports torch.

The export's readers are numpy twins of generate/readers.py, stepped by the one generation
loop (generate/engine.py) with its numpy backend: the prompt goes through the step model one
token at a time (batch 1) and its state is repeated for the samples, which run as one batch,
one step per token; a window run's export reads each sample's last window instead, for every
token. The same seed gives the same text as the run itself, to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .config import SampleConfig
from .documents import document_prompt_ids, document_unit, load_tokenizer
from .errors import ChargenError, CheckpointError, ConfigError
from .files import plain_name, read_json
from .generate.engine import Engine, Generation, generate_alone
from .generate.nplogits import NumpyOps
from .kinds import RunKind
from .pieces import SampleMethods
from .tokenizer import encode_prompt

EXPORT_FORMAT_VERSION = 1
MODEL_FILE, META_FILE = "model.onnx", "export.json"
INSTALL_HINT = "pip install 'chargen[onnx]'"
NO_BEAM = ("beam search runs on a trained run, not on an ONNX export: sample the run itself, "
           "or drop beam")
NO_PROMPT = ("an ONNX export holds no training text to draw a random prompt from: give one with "
             "--prime")


def state_names(cell: str) -> list[str]:
    return ["h", "c"] if cell == "lstm" else ["h"]


def is_export(path: str | Path) -> bool:
    return (Path(path) / META_FILE).is_file()


def _read_json(path: Path) -> Any:
    return read_json(path, None, "ONNX export", "export the run again")


def _member(meta: dict, key: str) -> str:
    """A file the export's metadata names: a plain name inside the export directory."""
    return plain_name(meta.get(key), "an export's files are plain names inside its directory")


def _session(model_path: Path):
    try:
        import onnxruntime
    except ImportError:
        raise ChargenError(f"sampling from an ONNX export needs onnxruntime: {INSTALL_HINT}") from None
    if not model_path.is_file():
        raise CheckpointError(f"{model_path} is missing; export the run again")
    try:
        return onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own untyped errors for unreadable models
        raise CheckpointError(f"{model_path} could not be loaded ({str(err).splitlines()[0]}); "
                              "export the run again") from None


def _kind(meta: dict, tokenizer) -> RunKind:
    """The run's kind as the export recorded it; exports written before it was recorded say
    it by their window and their tokenizer's document markers."""
    if "kind" in meta:
        try:
            return RunKind(**meta["kind"])
        except TypeError:
            raise CheckpointError("the export's record of its run kind is not one this chargen "
                                  "reads: export the run again") from None
    batching = "window" if "window" in meta else "documents" if document_unit(tokenizer) else "stream"
    return RunKind(batching, meta.get("window", 0), vocab_size=meta["vocab_size"])


class ExportedModel(SampleMethods):
    """An ONNX export, loaded for generation; generate/sample as api.LanguageModel's."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.meta = _read_json(self.path / META_FILE)
        if self.meta.get("format_version") != EXPORT_FORMAT_VERSION:
            raise CheckpointError(f"{self.path} is an export of format "
                                  f"{self.meta.get('format_version')!r}; this chargen reads format "
                                  f"{EXPORT_FORMAT_VERSION}: export the run again")
        self.tokenizer = load_tokenizer(_read_json(self.path / _member(self.meta, "tokenizer_file")))
        self.session = _session(self.path / _member(self.meta, "model_file"))
        self.state_names = state_names(self.meta["cell"])
        self.output_names = ["logits", *(f"{name}_out" for name in self.state_names)]
        self.kind = _kind(self.meta, self.tokenizer)

    def initial_state(self, batch: int) -> list[np.ndarray]:
        shape = (self.meta["num_layers"], batch, self.meta["hidden_size"])
        return [np.zeros(shape, dtype=np.float32) for _ in self.state_names]

    def step(self, ids: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """ids (batch,) -> logits (batch, vocab) and the new state."""
        feeds = {"ids": np.ascontiguousarray(ids, dtype=np.int64),
                 **dict(zip(self.state_names, state))}
        logits, *new_state = self.session.run(self.output_names, feeds)
        return logits, new_state

    def reader(self, prompt: np.ndarray, rows: int):
        """The reader for `rows` samples continuing `prompt` ((prompt_len,) ids)."""
        if self.kind.windowed:
            return _WindowReader(self, prompt, rows)
        return _StepReader(self, prompt, rows)

    @property
    def document_unit(self) -> str | None:
        """line, sentence or paragraph for a document run's export (each sample is one)."""
        return document_unit(self.tokenizer)

    def generate_batch(self, prime: str | None = None, **settings: Any) -> Iterator[list[str]]:
        """Yields one text piece per sample per step; settings are SampleConfig fields. A
        document run's samples start at [start] (then the prime, if any) and stop at [end]."""
        config = SampleConfig(**settings).validate()
        if config.beam:  # it was ignored here: the export sampled instead, silently
            raise ConfigError(NO_BEAM)
        if prime is not None and not isinstance(prime, str):
            raise ConfigError("an ONNX export continues one prime for all its samples: give "
                              "one text (sample the run itself for a prime per sample)")
        if self.document_unit:
            prompt = document_prompt_ids(self.tokenizer, prime, config.unknown)
        elif prime is None:
            raise ConfigError(NO_PROMPT)
        else:
            prompt = encode_prompt(self.tokenizer, prime, config.unknown).astype(np.int64)
        yield from self._generate(prompt, config)

    def generate_ids(self, prompt: np.ndarray, config: SampleConfig) -> Iterator[np.ndarray]:
        """prompt: (prompt_len,) ids. Yields config.length arrays of shape (config.num,)."""
        yield from self._generate(prompt, config, "ids")

    def _generate(self, prompt: np.ndarray, config: SampleConfig, wanted: str = "pieces"):
        engine = Engine(NumpyOps(), self.kind, self.tokenizer)
        reader = self.reader(prompt, config.num)
        yield from generate_alone(engine, Generation(prompt, config), reader, wanted)


class _StepReader:
    """A step model's rows: the prompt read one token at a time, its state repeated per row."""

    def __init__(self, model: ExportedModel, prompt: np.ndarray, rows: int):
        self.model, state, logits = model, model.initial_state(1), None
        for token in prompt.tolist():
            logits, state = model.step(np.array([token]), state)
        self.state = [np.repeat(part, rows, axis=1) for part in state]
        self.logits = np.repeat(logits, rows, axis=0)

    def push(self, next_ids: np.ndarray) -> None:
        self.logits, self.state = self.model.step(next_ids, self.state)

    def select(self, rows: np.ndarray) -> None:
        self.logits, self.state = self.logits[rows], [part[:, rows] for part in self.state]


class _WindowReader:
    """A window model's rows: each row's last `window` ids, left-padded, read afresh for every
    token (readers.Rereading's way)."""

    def __init__(self, model: ExportedModel, prompt: np.ndarray, rows: int):
        window, self.session = model.kind.window, model.session
        tail = prompt[-window:]
        self.windows = np.full((rows, window), model.kind.pad_id, dtype=np.int64)
        self.windows[:, window - len(tail):] = tail
        self.logits = self._read()

    def _read(self) -> np.ndarray:
        return self.session.run(["logits"], {"ids": self.windows})[0]

    def push(self, next_ids: np.ndarray) -> None:
        self.windows = np.concatenate([self.windows[:, 1:], next_ids[:, None].astype(np.int64)],
                                      axis=1)
        self.logits = self._read()

    def select(self, rows: np.ndarray) -> None:
        self.windows, self.logits = self.windows[rows], self.logits[rows]


def load_export(path: str | Path) -> ExportedModel:
    return ExportedModel(path)
