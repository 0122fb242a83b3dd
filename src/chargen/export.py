"""Export a trained run's generator to ONNX, beside its tokenizer.

The step model takes ids (batch,) and the recurrent state ((layers, batch, hidden): h, and c
for an LSTM) and returns logits (batch, vocab) and the new state; the batch size is dynamic.
A window run (--batching window, variable-window, prefix) predicts from a whole window read
afresh for every token, so its export is a window model instead: ids (batch, window) in,
logits (batch, vocab) for the next token out; export.json's "window" and "pad_id" say so.
The export directory is self-contained: onnx_sampler.py generates from it without torch (a
document run's [start] and [end] ids are in its tokenizer.json).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .config import DataConfig, ModelConfig
from .errors import ChargenError, CheckpointError
from .files import TOKENIZER, current_umask, holds_something
from .model import RNNLanguageModel
from .onnx_sampler import EXPORT_FORMAT_VERSION, INSTALL_HINT, META_FILE, MODEL_FILE, state_names
from .tokenizer import Tokenizer, save_tokenizer_json


class WindowModel(nn.Module):
    """A window of ids per row through the run's model; the logits after its last id."""

    def __init__(self, net: RNNLanguageModel):
        super().__init__()
        self.net = net

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.net(ids)[0][:, -1]


class StepModel(nn.Module):
    """One token per row through the run's own embedding, RNN and head."""

    def __init__(self, net: RNNLanguageModel):
        super().__init__()
        self.net = net

    def forward(self, ids: torch.Tensor, *state: torch.Tensor):
        logits, new_state = self.net(ids.unsqueeze(1), state if len(state) == 2 else state[0])
        return (logits[:, 0], *(new_state if isinstance(new_state, tuple) else (new_state,)))


def export_run(run: str, out: str | None = None, which: str = "best") -> Path:
    """Write RUN's step model, tokenizer and export.json to `out` (default RUN/export-onnx);
    an existing non-empty `out` is refused. -> the export directory."""
    from .api import load

    target = Path(out) if out is not None else Path(run) / "export-onnx"
    _check_free(target)
    _require_exporter()
    model = load(run, which=which, device="cpu")
    return write_export(model.net, model.tokenizer, model.config.data, target,
                        {"run": str(model.run.path), "weights": which})


def write_export(net: RNNLanguageModel, tokenizer: Tokenizer, data: DataConfig, target: Path,
                 source: dict | None = None) -> Path:
    """The export directory for a model and its tokenizer, written whole or not at all."""
    _check_free(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp",
                                    dir=_existing_parent(target)))
    staging.chmod(0o777 & ~current_umask())  # mkdtemp's is 0o700: give it a plain directory's mode
    try:
        (write_window_model if net.kind.windowed else write_step_model)(net, staging / MODEL_FILE)
        (staging / TOKENIZER).write_text(save_tokenizer_json(tokenizer) + "\n", encoding="utf-8")
        meta = _metadata(net.config, tokenizer, data, source or {})
        meta["kind"] = net.kind.as_dict()
        if net.kind.windowed:
            meta.update(inputs=["ids"], window=net.kind.window, pad_id=net.kind.pad_id)
        (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _publish(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def write_step_model(net: RNNLanguageModel, path: Path) -> None:
    """torch.onnx's dynamo exporter (the TorchScript one is deprecated); the fused RNN becomes
    one ONNX LSTM/GRU node."""
    config = net.config
    names = state_names(config.cell)
    ids = torch.zeros(2, dtype=torch.long)
    state = [torch.zeros(config.num_layers, 2, config.hidden_size) for _ in names]
    batch = torch.export.Dim("batch", min=1)
    step = StepModel(net.cpu().float()).eval()
    with _quiet_exporter():
        program = torch.onnx.export(
            step, (ids, *state), dynamo=True, input_names=["ids", *names],
            output_names=["logits", *(f"{name}_out" for name in names)],
            dynamic_shapes={"ids": {0: batch}, "state": tuple({1: batch} for _ in names)})
        program.save(str(path), external_data=False)


def write_window_model(net: RNNLanguageModel, path: Path) -> None:
    """A window model's export: its whole forward pass over (batch, window) ids."""
    ids = torch.zeros(2, net.kind.window, dtype=torch.long)
    batch = torch.export.Dim("batch", min=1)
    with _quiet_exporter():
        program = torch.onnx.export(WindowModel(net.cpu().float()).eval(), (ids,), dynamo=True,
                                    input_names=["ids"], output_names=["logits"],
                                    dynamic_shapes={"ids": {0: batch}})
        program.save(str(path), external_data=False)


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter prints progress lines on stdout (which carries chargen's payload), logs
    notes and warns about its internals: none of it is the user's business."""
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        exporter_log.setLevel(level)


def _metadata(model: ModelConfig, tokenizer: Tokenizer, data: DataConfig, source: dict) -> dict:
    return {
        "format_version": EXPORT_FORMAT_VERSION, "chargen_version": __version__,
        "model_file": MODEL_FILE, "tokenizer_file": TOKENIZER,
        "cell": model.cell, "num_layers": model.num_layers, "hidden_size": model.hidden_size,
        "vocab_size": tokenizer.vocab_size, "inputs": ["ids", *state_names(model.cell)],
        "never_sample": list(tokenizer.never_sample),
        "data": {"tokenizer": data.tokenizer, "lowercase": data.lowercase,
                 "normalize_newlines": data.normalize_newlines},
        "source": source,
    }


def _require_exporter() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ChargenError(f"exporting to ONNX needs onnx and onnxscript: {INSTALL_HINT}") from None


def _check_free(target: Path) -> None:
    if holds_something(target):
        raise CheckpointError(f"{target} already exists and is not empty; choose another --out or "
                              "remove it")


def _existing_parent(target: Path) -> Path:
    parent = target.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def _publish(staging: Path, target: Path) -> None:
    """Rename the finished directory into place (replacing at most an empty directory)."""
    for file in staging.iterdir():
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    try:
        os.rename(staging, target)
    except OSError:
        _check_free(target)  # another writer got there first: say so in one line
        raise
