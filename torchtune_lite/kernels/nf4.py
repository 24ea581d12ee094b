"""NF4 quantize and dequantize over blocks in one C pass each, on CPU (see `nf4.c` for the arithmetic).

The torch-ops form of the same arithmetic (quantization/nf4_kernels.py) makes several passes per chunk, each
a separate multi-threaded op; these kernels read each block once, split over torch's thread count. The
caller supplies torchao's code choices (a table for 16-bit dtypes, switch points for fp32), so this layer
knows nothing of torchao. Each function returns False or None, having decided nothing, where the kernel
cannot run or met a NaN; the caller then takes its torch ops, which reproduce torchao's NaN bits.
"""

import ctypes
from pathlib import Path
from typing import Callable, Optional

import torch

from torchtune_lite.kernels import c_library

_SOURCE = Path(__file__).with_name("nf4.c")
_SUFFIX = {torch.bfloat16: "bf16", torch.float16: "f16", torch.float32: "f32"}
_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
# Dequantize paths by width; the C dispatcher lowers a request to the widest this CPU runs ("avx512bf16"
# serves bf16 weights; fp32 and fp16 take "avx512" there).
PATHS = ("scalar", "avx2", "avx512", "avx512bf16")


def runs_on(t: torch.Tensor) -> bool:
    """Whether the kernels take weights like `t` here (CPU, bf16/fp16/fp32, C kernels enabled and built)."""
    return c_library.enabled() and t.device.type == "cpu" and t.dtype in _SUFFIX and c_library.load(_SOURCE) is not None


def _kernel(name: str, argtypes: tuple, restype=ctypes.c_int) -> Callable:
    # c_library caches the resolved function: small weights make many calls.
    return c_library.function(_SOURCE, name, list(argtypes), restype)


def widest_path() -> str:
    """The widest dequantize path this CPU runs (one of `PATHS`), as the C dispatcher chooses it."""
    return PATHS[_kernel("ttl_nf4_widest_path", ())()]


def _all_parts_ran(run: Callable[[int, int], int], rows: int, elements: int) -> bool:
    """`run(lo, hi)` over row parts (see `c_library.run_in_row_parts`); True when no part returned non-zero."""
    failed = []
    c_library.run_in_row_parts(lambda lo, hi: failed.append(run(lo, hi)), rows, elements)
    return not any(failed)


def quantize_blocks(blocks: torch.Tensor, codes_of: torch.Tensor) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """blocks: [n_blocks, block_size] contiguous, block_size even, where `runs_on(blocks)`.

    codes_of: for 16-bit dtypes [65536] uint8, the code of every scaled bit pattern; for fp32 [15] fp32, the
    smallest scaled value of each code above 0. Returns (absmax: [n_blocks] in blocks' dtype, packed:
    [numel / 2] uint8), or None when a block holds NaN.
    """
    n_blocks, block_size = blocks.shape
    absmax = torch.empty(n_blocks, dtype=blocks.dtype)
    packed = torch.empty(blocks.numel() // 2, dtype=torch.uint8)
    fn = _kernel(f"ttl_nf4_quantize_{_SUFFIX[blocks.dtype]}", (_P, _I64, _I64, _P, _P, _P))
    size = blocks.element_size()

    def run(lo: int, hi: int) -> int:
        return fn(blocks.data_ptr() + lo * block_size * size, hi - lo, block_size, codes_of.data_ptr(),
                  absmax.data_ptr() + lo * size, packed.data_ptr() + lo * (block_size // 2))

    return (absmax, packed) if _all_parts_ran(run, n_blocks, blocks.numel()) else None


def dequantize_blocks(
    packed: torch.Tensor,
    quantized_scalers: torch.Tensor,
    quantization_factor: torch.Tensor,
    scaler_mean: torch.Tensor,
    scaler_block_size: int,
    codes: torch.Tensor,
    out: torch.Tensor,
    path: Optional[str] = None,
) -> bool:
    """Writes `out: [n_blocks, block_size]` (contiguous, where `runs_on(out)`) from an NF4 weight's fields:
    `packed: [n_blocks * block_size / 2]` uint8, `quantized_scalers: [n_blocks]` int8, `quantization_factor:
    [n_blocks / scaler_block_size]` and `scaler_mean: []` in out's dtype; `codes: [16]` fp32, the code values.
    Returns False when a block's scale is NaN (out is then partly written). `path` (tests) asks for a narrower
    path than the widest.
    """
    n_blocks, block_size = out.shape
    fn = _kernel(f"ttl_nf4_dequantize_{_SUFFIX[out.dtype]}", (_P, _P, _P, _P, _I64, _P, _I64, _I64, _I64, _INT, _P))
    level = PATHS.index(path or PATHS[-1])
    fields = [t.contiguous() for t in (packed, quantized_scalers, quantization_factor, scaler_mean)]  # alive until return
    pointers = [t.data_ptr() for t in fields]

    def run(lo: int, hi: int) -> int:
        return fn(*pointers, scaler_block_size, codes.data_ptr(), lo, hi - lo, block_size, level, out.data_ptr())

    return _all_parts_ran(run, n_blocks, out.numel())


def advise_huge_pages(t: torch.Tensor) -> None:
    """Hints that Linux back the fresh CPU tensor `t` with 2 MB pages (first touch of 4 KB pages costs more
    than dequantizing into them); nothing happens elsewhere or without the kernel."""
    if runs_on(t):
        _kernel("ttl_nf4_advise_huge_pages", (_P, _I64), None)(t.data_ptr(), t.numel() * t.element_size())
