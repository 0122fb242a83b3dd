import pytest
import torch

from chargen.errors import ConfigError
from chargen.resources import check_fits, format_bytes
from chargen.runtime import (
    autocast,
    resolve_device,
    resolve_precision,
    to_device,
)


def test_auto_device_is_cuda_only_when_available():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if expected == "cpu" and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"


@pytest.mark.parametrize("cuda, mps, expected", [
    (True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("device, bf16, expected", [
    ("cuda", True, torch.bfloat16), ("cuda", False, None), ("mps", True, None),
    ("cpu", True, torch.bfloat16), ("cpu", False, None)])
def test_auto_precision_knows_each_device(monkeypatch, device, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: bf16)
    assert resolve_precision("auto", torch.device(device)) is expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_one_is_a_clear_error():
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_precision_choices_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    assert resolve_precision("auto", cpu) in (None, torch.bfloat16)
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        resolve_precision("fp16", cpu)


def test_autocast_on_cpu_computes_in_bf16():
    linear = torch.nn.Linear(4, 4)
    with autocast(torch.device("cpu"), torch.bfloat16):
        assert linear(torch.randn(2, 4)).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), None):
        assert linear(torch.randn(2, 4)).dtype == torch.float32


def test_host_tensors_stay_put_on_cpu():
    tensor = torch.arange(3)
    assert to_device(tensor, torch.device("cpu")) is tensor


def test_memory_check_refuses_with_the_estimate(monkeypatch):
    monkeypatch.setenv("CHARGEN_MAX_MEMORY", "1G")
    check_fits(2**29, "a small thing", "fix")
    with pytest.raises(Exception, match=r"about 2\.0 GB of memory, more than the 1\.0 GB"):
        check_fits(2**31, "a big thing", "use less")
    assert format_bytes(1536) == "1.5 KB"
