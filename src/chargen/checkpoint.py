"""The run directory: config, tokenizer, ids, weights, trainer state, metrics.

Every file is written atomically (temporary file, fsync, os.replace), so a reader never
sees half a file. Nothing here unpickles: weights and trainer state are safetensors,
everything else JSON or numpy arrays loaded with allow_pickle=False.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as dump_safetensors

from . import __version__
from .config import FORMAT_VERSION, RunConfig
from .documents import load_tokenizer
from .errors import ChargenError, CheckpointError, ConfigError
from .files import (
    CONFIG,
    HEADER_LIMIT,
    JSONL_LIMIT,
    TOKENIZER,
    atomic_file,
    atomic_write,
    check_creatable,
    check_size,
    holds_something,
    plain_name,
    read_json,
    write_json,
)
from .model import estimate_parameters
from .tokenizer import Tokenizer, save_tokenizer_json

IDS, METRICS = "ids.npy", "metrics.jsonl"
BEST, LAST = "best.safetensors", "last.safetensors"
TRAINER_PREFIX = "trainer/"


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        """A file of the run. Only plain names: nothing may point outside the directory."""
        return self.path / plain_name(name, "run files are plain names inside the run directory")

    def discard(self) -> None:
        """Remove a run directory this process has just created (setup failed)."""
        for child in self.path.iterdir():
            child.unlink()
        self.path.rmdir()

    def remove_temporaries(self) -> None:
        """Delete the temporary files a killed writer left behind (never a finished file)."""
        for leftover in self.path.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()

    # -- creating -----------------------------------------------------------------------
    @staticmethod
    def fresh(path: str | os.PathLike, exist_ok_name: bool = False) -> RunDir:
        """A new run directory. An existing non-empty one is refused, or, with
        exist_ok_name, a fresh sibling name (-2, -3 ...) is picked."""
        base = Path(path)
        candidate, n = base, 1
        while holds_something(candidate):
            if not exist_ok_name:
                RunDir.check_free(candidate)
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")
        candidate.mkdir(parents=True, exist_ok=True)
        return RunDir(candidate)

    @staticmethod
    def check_free(path: str | os.PathLike) -> None:
        """Refuse an --out that already holds something, or that cannot be created (both
        checked before any work is done)."""
        if holds_something(Path(path)):
            raise CheckpointError(f"{path} already exists and is not empty; resume it with --resume "
                                  f"{path}, or choose another --out")
        check_creatable(Path(path))

    def write_ids(self, pieces, count: int, dtype: np.dtype) -> None:
        """Stream id arrays into ids.npy (atomically) without holding them all in memory."""
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                  "fortran_order": False, "shape": (count,)}
        with atomic_file(self.file(IDS)) as handle:
            np.lib.format.write_array_header_1_0(handle, header)
            written = 0
            for ids in pieces:
                handle.write(np.ascontiguousarray(ids, dtype=dtype).tobytes())
                written += len(ids)
            if written != count:
                raise CheckpointError(f"the corpus changed while it was read ({written:,} "
                                      f"tokens, not {count:,}); train again")

    def link_ids(self, source: RunDir) -> None:
        """Share another run's ids.npy (a hard link where the file system allows, else a
        copy); ids files are only ever replaced, never changed in place, so sharing is safe."""
        tmp = self.file(f".{IDS}.link.tmp")
        try:
            os.link(source.file(IDS), tmp)
        except OSError:
            shutil.copyfile(source.file(IDS), tmp)
        os.replace(tmp, self.file(IDS))

    def write_setup(self, config: RunConfig, tokenizer: Tokenizer,
                    corpus_info: dict[str, Any]) -> None:
        """config.json last: a directory without it is not (yet) a run."""
        atomic_write(self.file(TOKENIZER), (save_tokenizer_json(tokenizer) + "\n").encode())
        write_json(self.file(CONFIG), {
            "format_version": FORMAT_VERSION,
            "chargen_version": __version__,
            "config": config.to_dict(),
            "corpus": corpus_info,
        })

    # -- reading ------------------------------------------------------------------------
    def check_exists(self) -> RunDir:
        if self.path.is_file():
            raise CheckpointError(f"{self.path} is a file, not a run directory: give the "
                                  "directory chargen train wrote (its --out)")
        if not self.path.is_dir():
            raise CheckpointError(f"{self.path}: no such run directory")
        if not self.file(CONFIG).exists():
            raise CheckpointError(f"{self.path} is not a chargen run directory (no {CONFIG})")
        return self

    def read_meta(self) -> dict[str, Any]:
        meta = read_json(self.file(CONFIG))
        version = meta.get("format_version") if isinstance(meta, dict) else None
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"{self.file(CONFIG)} has format version {version!r}; this chargen reads version "
                f"{FORMAT_VERSION} (upgrade chargen, or retrain)"
            )
        return meta

    def read_config(self) -> RunConfig:
        try:
            return RunConfig.from_dict(self.read_meta().get("config", {})).validate()
        except (TypeError, ChargenError) as err:
            raise CheckpointError(f"{self.file(CONFIG)} holds invalid settings: {err}") from None

    def read_tokenizer(self) -> Tokenizer:
        try:
            return load_tokenizer(read_json(self.file(TOKENIZER)))
        except ChargenError as err:
            raise CheckpointError(f"{self.path}: {err}") from None

    def read_ids(self) -> np.ndarray:
        """The token ids, memory-mapped; their count must be the one config.json records."""
        corpus = self.read_meta().get("corpus", {})
        expected = corpus.get("train_tokens", 0) + corpus.get("val_tokens", 0)
        path = self.file(IDS)
        try:
            check_size(path, HEADER_LIMIT + 8 * expected, "the ids of this run's corpus")
            ids = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise CheckpointError(f"{path} is missing; retrain this run") from None
        except ValueError as err:
            raise CheckpointError(f"{path} is damaged ({err}); retrain this run") from None
        exact = getattr(ids, "offset", 0) + ids.nbytes == os.path.getsize(path)
        if ids.ndim != 1 or (expected and len(ids) != expected) or not exact:
            raise CheckpointError(f"{path} holds {ids.shape} ids where config.json records "
                                  f"{expected:,}; it is damaged or not this run's: retrain")
        return ids

    def weights_file(self, which: str = "best") -> Path:
        if which not in ("best", "last"):
            raise ConfigError(f"--which must be best or last (got {which!r})")
        name = {"best": BEST, "last": LAST}[which]
        path = self.file(name)
        if which == "best" and not path.exists() and self.file(LAST).exists():
            path = self.file(LAST)
        if not path.exists():
            raise CheckpointError(f"{self.path} has no saved weights yet ({name}); train it first")
        return path

    # -- metrics ------------------------------------------------------------------------
    def append_metrics(self, record: dict[str, Any]) -> None:
        self.append_jsonl(METRICS, record)

    def read_metrics(self) -> list[dict[str, Any]]:
        return self.read_jsonl(METRICS)

    def append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        with open(self.file(name), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        path = self.file(name)
        if not path.exists():
            return []
        check_size(path, JSONL_LIMIT)
        records = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line torn by a kill mid-write
        return records


def save_checkpoint(path: Path, weights: dict[str, torch.Tensor],
                    trainer_tensors: dict[str, torch.Tensor] | None = None,
                    info: dict[str, Any] | None = None) -> None:
    tensors, seen = {}, set()
    for key, value in weights.items():
        value = value.detach().cpu().contiguous()
        # safetensors refuses shared storage (tied embeddings): save a copy under the second name
        tensors[key] = value.clone() if value.data_ptr() in seen else value
        seen.add(value.data_ptr())
    for key, value in (trainer_tensors or {}).items():
        tensors[TRAINER_PREFIX + key] = value.detach().cpu().contiguous()
    metadata = {"format_version": str(FORMAT_VERSION), "info": json.dumps(info or {})}
    atomic_write(path, dump_safetensors(tensors, metadata=metadata))


def load_checkpoint(path: Path, limit: int | None = None
                    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """-> (weights, trainer tensors, info). The header is read and checked against the
    file's size (and the file's size against `limit`, what the run's config implies) before
    the tensors are."""
    header = read_header(path, limit)
    try:
        tensors = load_safetensors(Path(path).read_bytes())
    except (SafetensorError, ValueError, OSError) as err:
        raise _unreadable(path, err) from None
    weights = {k: v for k, v in tensors.items() if not k.startswith(TRAINER_PREFIX)}
    trainer = {k[len(TRAINER_PREFIX):]: v for k, v in tensors.items() if k.startswith(TRAINER_PREFIX)}
    return weights, trainer, _info(header)


def fit_weights(net: torch.nn.Module, weights: dict[str, torch.Tensor], run_path: Path) -> None:
    """Load weights into a model built from the run's config, or say that they do not fit."""
    try:
        net.load_state_dict(weights)
    except RuntimeError:
        raise CheckpointError(
            f"the weights in {run_path} do not match its config.json / tokenizer.json (another "
            "model size or vocabulary); restore the original files or retrain") from None


def checkpoint_info(path: Path, limit: int | None = None) -> dict:
    """The info a checkpoint was saved with, from its header alone."""
    return _info(read_header(path, limit))


def checkpoint_limit(config: RunConfig, vocab_size: int) -> int:
    """The largest file a checkpoint of this run can be: float32 weights (a tied embedding
    saved twice), two Adam moments, a weight average, the carried recurrent state of up to 256 processes'
    streams, and the header."""
    parameters = estimate_parameters(config.model, vocab_size)
    model = config.model
    directions = 2 if model.bidirectional else 1
    carried = 2 * model.num_layers * directions * model.hidden_size * config.data.batch_size * 256
    return 4 * (5 * parameters + carried) + (16 << 20)


def read_header(path: Path, limit: int | None = None) -> dict:
    try:
        size = check_size(Path(path), limit or 1 << 62, "a checkpoint of this model")
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if size < 8 or length > min(HEADER_LIMIT, size - 8):
                raise ValueError(f"a header of {length:,} bytes in a file of {size:,}")
            header = json.loads(handle.read(length))
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (ValueError, OSError, TypeError, KeyError, IndexError, AttributeError) as err:
        raise _unreadable(path, err) from None
    if 8 + length + max(ends, default=0) != size:
        raise _unreadable(path, f"its header describes {8 + length + max(ends, default=0):,} "
                                f"bytes, the file holds {size:,}")
    return header


def _unreadable(path, err) -> CheckpointError:
    return CheckpointError(f"{path} is not a readable safetensors checkpoint ({err}); it may be "
                           "truncated: use the other checkpoint or retrain")


def _info(header: dict) -> dict:
    metadata = header.get("__metadata__") or {}
    try:
        info = json.loads(metadata.get("info", "{}"))
    except (json.JSONDecodeError, TypeError, AttributeError):
        return {}
    return info if isinstance(info, dict) else {}
