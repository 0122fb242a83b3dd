"""The one place for device choice, seeding and numeric precision."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from .errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps was asked for but MPS is not available; use --device cpu")
    return device


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `name` on `device`; None means plain float32."""
    if name == "fp32":
        return None
    if name == "auto":
        return torch.bfloat16 if bf16_is_fast(device) else None
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[name]
    if device.type == "cpu" and dtype == torch.float16:
        raise ConfigError("--precision fp16 needs a GPU; on CPU use bf16 or fp32")
    return dtype


def bf16_is_fast(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)



# oneDNN's fused RNN pays a large fixed cost per call (measured on this CPU: ~6 ms for a 2x512
# LSTM, whatever the batch up to 32), which swamps one-token decoding steps; ATen's native
# kernels are 2-15x faster there. Big batches still go to oneDNN.
NATIVE_RNN_MAX_BATCH = 32


@contextlib.contextmanager
def decoding_kernels(device: torch.device, batch_size: int):
    """The fastest RNN kernels for one-token steps: native ATen on CPU for small batches."""
    if device.type != "cpu" or batch_size > NATIVE_RNN_MAX_BATCH:
        yield
        return
    previous = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(False)
    try:
        yield
    finally:
        torch._C._set_mkldnn_enabled(previous)
