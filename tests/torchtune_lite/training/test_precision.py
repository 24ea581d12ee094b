import pytest
import torch

from torchtune_lite.training.precision import get_dtype, set_default_dtype

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "name, dtype",
    [("bf16", torch.bfloat16), ("fp32", torch.float32), ("BF16", torch.bfloat16), ("float32", torch.float32)],
)
@pytest.mark.filterwarnings("ignore:dtype=bf16 on a CPU without native bf16")
def test_names(name, dtype):
    assert get_dtype(name, CPU) is dtype


@pytest.mark.parametrize("name", [None, "auto", "AUTO"])
def test_auto_is_bf16_only_where_the_cpu_computes_it_natively(name):
    # Independent check: oneDNN's bf16 GEMM needs AVX512-BF16 or AMX, which the kernel lists in cpuinfo.
    flags = open("/proc/cpuinfo").read() if __import__("os").path.exists("/proc/cpuinfo") else ""
    native = any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))
    assert get_dtype(name, CPU) is (torch.bfloat16 if native else torch.float32)


@pytest.mark.parametrize("name", ["fp16", "float16", "half"])
def test_fp16_is_refused_with_a_reason(name):
    with pytest.raises(ValueError, match="fp16 needs loss scaling"):
        get_dtype(name, CPU)


def test_unknown_name():
    with pytest.raises(ValueError, match="dtype=int8 is not a training dtype: use dtype=bf16, fp32 or auto"):
        get_dtype("int8", CPU)


def test_set_default_dtype_restores_even_after_an_error():
    before = torch.get_default_dtype()
    with set_default_dtype(torch.bfloat16):
        assert torch.nn.Linear(2, 2).weight.dtype == torch.bfloat16
    assert torch.get_default_dtype() == before
    with pytest.raises(RuntimeError):
        with set_default_dtype(torch.bfloat16):
            raise RuntimeError("boom")
    assert torch.get_default_dtype() == before


# ---------------------------------------------------------------- CUDA branches, with torch.cuda patched
def _fake_gpu(monkeypatch, native_bf16: bool) -> None:
    """A GPU without CUDA: bf16 native (Ampere+) or only emulated (V100/T4: supported only with emulation)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native_bf16 or including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_on_cuda_never_picks_emulated_bf16(monkeypatch, native, expected):
    _fake_gpu(monkeypatch, native_bf16=native)
    assert get_dtype("auto", torch.device("cuda", 0)) is expected


def test_explicit_bf16_on_a_gpu_that_emulates_it_warns(monkeypatch):
    _fake_gpu(monkeypatch, native_bf16=False)
    with pytest.warns(UserWarning, match="a GPU that emulates bf16"):
        assert get_dtype("bf16", torch.device("cuda", 0)) is torch.bfloat16


def test_tf32_is_enabled_for_fp32_on_cuda_only():
    from torchtune_lite.training.precision import enable_tf32_for_fp32

    saved = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert not enable_tf32_for_fp32(CPU, torch.float32)
        assert not enable_tf32_for_fp32(torch.device("cuda", 0), torch.bfloat16)
        assert not torch.backends.cuda.matmul.allow_tf32
        assert enable_tf32_for_fp32(torch.device("cuda", 0), torch.float32)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32  # what cuBLAS/cuDNN read
    finally:
        torch.set_float32_matmul_precision(saved)
