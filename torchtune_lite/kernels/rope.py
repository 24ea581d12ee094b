"""RoPE's rotation and its inverse (the backward) as one C pass on CPU, between any two head layouts.

The torch ops rotate in three passes (a multiply, the pair swap, an addcmul) and leave q and k in the
[b, s, h, d] layout of the projections, which attention's batched matmuls then copy to [b, h, s, d]. Here
the rotation writes [b, h, s, d] memory directly (see `rope.c`); `modules.RotaryPositionalEmbeddings`
uses it where `runs_on` says so and keeps its torch ops elsewhere.
"""

import ctypes
from pathlib import Path
from typing import Optional

import torch

from torchtune_lite.kernels import c_library

_SOURCE = Path(__file__).with_name("rope.c")
_SUFFIX = {torch.bfloat16: "bf16", torch.float32: "f32"}
_P, _I64, _F32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
_ARGS = [_P, _I64, _I64, _I64, _P, _I64, _I64, _I64, _I64, _I64, _I64, _I64, _I64, _P, _P, _I64, _F32]


def runs_on(x: torch.Tensor) -> bool:
    """Whether the kernel takes `x: [b, s, h, d]` here (CPU, bf16 or fp32, unit stride over d)."""
    return (
        c_library.enabled()
        and x.device.type == "cpu"
        and x.dtype in _SUFFIX
        and x.dim() == 4
        and x.stride(-1) == 1
        and c_library.load(_SOURCE) is not None
    )


def rotate(
    x: torch.Tensor, table: torch.Tensor, positions: Optional[torch.Tensor], out: torch.Tensor, inverse: bool = False
) -> torch.Tensor:
    """Writes the rotation of `x: [b, s, h, d]` into `out` (same shape, any strides with unit stride over d).

    table: [max_positions, d // 2, 2] fp32 contiguous (cos, sin); positions: [b, s] int64 (batch stride 0 for
    one row shared by the batch) within the table, or None for 0..s-1. inverse: rotate back (the backward).
    Only where `runs_on(x)`.
    """
    fn = c_library.function(_SOURCE, f"ttl_rope_{_SUFFIX[x.dtype]}", _ARGS)
    b, s, h, d = x.shape
    pos_ptr, pos_batch = (None, 0) if positions is None else (positions.data_ptr(), positions.stride(0))
    sign = -1.0 if inverse else 1.0

    def run(lo: int, hi: int) -> None:
        fn(x.data_ptr(), x.stride(0), x.stride(1), x.stride(2), out.data_ptr(), out.stride(0), out.stride(1),
           out.stride(2), lo, hi - lo, s, h, d, table.data_ptr(), pos_ptr, pos_batch, sign)

    c_library.run_in_row_parts(run, b * s, x.numel())
    return out
