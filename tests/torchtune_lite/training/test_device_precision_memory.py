"""get_device, get_dtype / set_default_dtype and get_memory_stats on a CPU-only machine."""

from __future__ import annotations

import pytest
import torch

from torchtune_lite.training import format_memory_stats, get_device, get_dtype, get_memory_stats, reset_peak_memory_stats, set_default_dtype

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")


def test_cpu_and_auto():
    assert get_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert get_device("auto") == torch.device("cpu")
        assert get_device() == torch.device("cpu")


@needs_no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_a_one_line_error(name):
    with pytest.raises(ValueError, match="CUDA is not available") as err:
        get_device(name)
    assert "\n" not in str(err.value) and "device=cpu" in str(err.value)


def test_unknown_device():
    with pytest.raises(ValueError, match="not supported"):
        get_device("tpu")


def test_get_dtype():
    cpu = torch.device("cpu")
    assert get_dtype(None, cpu) == torch.bfloat16
    assert get_dtype("bf16", cpu) == torch.bfloat16
    assert get_dtype("fp32", cpu) == torch.float32


@pytest.mark.parametrize("name", ["fp16", "float16"])
def test_get_dtype_rejects_fp16(name):
    with pytest.raises(ValueError, match="bf16") as err:
        get_dtype(name, torch.device("cpu"))
    assert "\n" not in str(err.value)


def test_get_dtype_rejects_unknown():
    with pytest.raises(ValueError):
        get_dtype("int8", torch.device("cpu"))


def test_set_default_dtype_restores_after_error():
    before = torch.get_default_dtype()
    with pytest.raises(RuntimeError):
        with set_default_dtype(torch.bfloat16):
            assert torch.nn.Linear(2, 2).weight.dtype == torch.bfloat16
            raise RuntimeError("boom")
    assert torch.get_default_dtype() == before


def test_memory_stats_on_cpu():
    cpu = torch.device("cpu")
    reset_peak_memory_stats(cpu)  # a no-op on CPU, must not fail
    stats = get_memory_stats(cpu)
    assert set(stats) == {"rss_peak", "rss_current"}
    assert 0 < stats["rss_current"] <= stats["rss_peak"] + 1e-3
    assert stats["rss_peak"] < 1024  # GiB, not bytes or KiB
    assert format_memory_stats(stats).startswith("rss peak ")
