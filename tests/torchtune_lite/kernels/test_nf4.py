"""The NF4 C kernels on every dequantize path this CPU can run (scalar, AVX2, AVX-512, AVX512-BF16), bit for bit
against torchao; a row split over threads; the NaN cases where they decline (the caller then takes torch ops)."""

import pytest
import torch

from tests.conftest import C_COMPILER
from torchtune_lite._torchao import to_nf4
from torchtune_lite.kernels import nf4 as nf4_c
from torchtune_lite.quantization import nf4_block_sizes
from torchtune_lite.quantization.nf4_kernels import _code_table_16bit, _code_thresholds_tensor, _code_values_fp32

pytestmark = pytest.mark.skipif(C_COMPILER is None, reason="no C compiler here: the C kernels cannot build")

DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().flatten().clone(memory_format=torch.contiguous_format).view(torch.uint8)


def _paths_here() -> list[str]:
    return list(nf4_c.PATHS[: nf4_c.PATHS.index(nf4_c.widest_path()) + 1])


def _weight(shape: tuple[int, ...], dtype: torch.dtype, scale: float, seed: int = 0) -> torch.Tensor:
    """Gaussian values plus a zero block's worth of zeros, ties and a negative extreme."""
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(shape, generator=g) * scale).to(dtype)
    flat = w.view(-1)
    flat[:2], flat[2:6], flat[7] = 0, scale, -4 * scale
    return w


def _dequantize_on(path: str, ref) -> torch.Tensor:
    out = torch.empty(ref.numel(), dtype=ref.dtype).view(-1, ref.block_size)
    fields = (ref.quantized_data, ref.quantized_scalers, ref.quantization_factor, ref.scaler_mean, ref.scaler_block_size)
    assert nf4_c.dequantize_blocks(*fields, _code_values_fp32(ref.dtype), out, path)
    return out.view(ref.shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [0.02, 1000.0])
@pytest.mark.parametrize("shape", [(64, 64), (512, 512), (3, 42), (7 * 64,), (9, 704), (40, 24)])
def test_every_dequantize_path_here_matches_torchao(dtype, scale, shape):
    ref = to_nf4(_weight(shape, dtype, scale), *nf4_block_sizes(torch.Size(shape).numel()))
    expected = _bits(ref.get_original_weight())
    for path in _paths_here():
        assert torch.equal(_bits(_dequantize_on(path, ref)), expected), path


def test_widest_path_follows_the_cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":")[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    if {"avx512f", "avx512bw", "avx512vl", "avx512_bf16"} <= flags:
        assert nf4_c.widest_path() == "avx512bf16"
    elif {"avx512f", "avx512bw", "avx512vl"} <= flags:
        assert nf4_c.widest_path() == "avx512"
    elif {"avx2", "fma"} <= flags:
        assert nf4_c.widest_path() == "avx2"


@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_split_over_threads_match_torchao(dtype):
    # 1024 x 512 elements split into two parts at two threads (see c_library.run_in_row_parts).
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        w = (torch.randn(1024, 512, generator=torch.Generator().manual_seed(1)) * 0.02).to(dtype)
        ref = to_nf4(w)
        codes_of = _code_thresholds_tensor() if dtype == torch.float32 else _code_table_16bit(dtype, torch.device("cpu"))
        absmax, packed = nf4_c.quantize_blocks(w.view(-1, 64), codes_of)
        assert torch.equal(packed, ref.quantized_data)
        assert torch.equal(_bits(absmax), _bits(w.view(-1, 64).abs().amax(dim=1)))
        assert torch.equal(_bits(_dequantize_on(nf4_c.widest_path(), ref)), _bits(ref.get_original_weight()))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_weights_and_scales_make_the_kernels_decline(dtype):
    w = torch.randn(8, 64).to(dtype)
    w[5, 3] = float("nan")
    codes_of = _code_thresholds_tensor() if dtype == torch.float32 else _code_table_16bit(dtype, torch.device("cpu"))
    assert nf4_c.quantize_blocks(w, codes_of) is None
    ref = to_nf4(torch.randn(8, 64).to(dtype), 64, 4)
    nan_mean = torch.tensor(float("nan"), dtype=dtype)
    out = torch.empty(8, 64, dtype=dtype)
    fields = (ref.quantized_data, ref.quantized_scalers, ref.quantization_factor, nan_mean, ref.scaler_block_size)
    assert not nf4_c.dequantize_blocks(*fields, _code_values_fp32(dtype), out)
