"""The one place for device choice, seeding and numeric precision."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from .errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto`: a CUDA GPU, else Apple's GPU (mps), else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps was asked for but MPS is not available; use --device cpu")
    return device


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `name` on `device`; None means plain float32. `auto` is bf16 on
    GPUs that support it and on CPUs with native bf16 matmuls (AVX-512 BF16, AMX: 1.5-3x
    fp32 measured), fp32 elsewhere: emulated bf16 on an AVX2-only CPU ran matmuls ~75x slower
    than fp32, and on Apple's GPU (mps) fp32 stays until fp16 autocast is measured there."""
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
        # False on CPUs without native bf16, and under ONEDNN_MAX_CPU_ISA=AVX2 (emulation)
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host -> device without a sync: pinned memory and a non-blocking copy on CUDA."""
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


