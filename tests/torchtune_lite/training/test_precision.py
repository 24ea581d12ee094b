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
