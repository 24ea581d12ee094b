"""RMSNorm forward and backward over rows in one fused C pass each, on CPU (see `rms_norm.c` for the math).

On the 58M benchmark model in bf16 the torch ops of one RMSNorm (fp32 upcast, square, mean, rsqrt, two
multiplies, downcast, and autograd's backward of each) took ~13 ms of one thread per call, 17 calls a step.
`runs_on` says where the kernels run; elsewhere `modules.RMSNorm` keeps its torch ops.
"""

import ctypes
from pathlib import Path
from typing import Optional

import torch

from torchtune_lite.kernels import c_library

_SOURCE = Path(__file__).with_name("rms_norm.c")
_SUFFIX = {torch.bfloat16: "bf16", torch.float32: "f32"}
_P, _I64, _F32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
_FORWARD_ARGS = [_P, _P, _I64, _I64, _F32, _P, _P]
_BACKWARD_ARGS = [_P, _P, _P, _P, _I64, _I64, _P, _P]


def runs_on(x: torch.Tensor) -> bool:
    """Whether the kernels take activations like `x` here (CPU, bf16 or fp32, C kernels enabled and built)."""
    return (
        c_library.enabled()
        and x.device.type == "cpu"
        and x.dtype in _SUFFIX
        and c_library.load(_SOURCE) is not None
    )


def rms_norm_forward(x: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """x: [..., dim] contiguous, weight: [dim] fp32 -> (y: x's shape and dtype, inv_rms: [rows] fp32), where
    rows counts x's vectors of `dim`.

    Only call where `runs_on(x)` (the caller checks once and keeps its torch ops otherwise).
    """
    fn = c_library.function(_SOURCE, f"ttl_rms_norm_forward_{_SUFFIX[x.dtype]}", _FORWARD_ARGS)
    dim = x.size(-1)
    rows = x.numel() // dim
    y, inv_rms = torch.empty_like(x), torch.empty(rows, dtype=torch.float32)
    size = x.element_size()

    def run(lo: int, hi: int) -> None:
        fn(x.data_ptr() + lo * dim * size, weight.data_ptr(), hi - lo, dim, eps, y.data_ptr() + lo * dim * size,
           inv_rms.data_ptr() + lo * 4)

    c_library.run_in_row_parts(run, rows, x.numel())
    return y, inv_rms


def rms_norm_backward(
    x: torch.Tensor, weight: torch.Tensor, inv_rms: torch.Tensor, grad: torch.Tensor, need_weight_grad: bool
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Gradients of `rms_norm_forward`'s y: (dL/dx: x's shape and dtype, dL/dweight: [dim] fp32 or None).

    Only call after `rms_norm_forward` ran on `x` (the kernel is then built). grad: x's shape and dtype, contiguous.
    """
    fn = c_library.function(_SOURCE, f"ttl_rms_norm_backward_{_SUFFIX[x.dtype]}", _BACKWARD_ARGS)
    dim = x.size(-1)
    rows = x.numel() // dim
    grad_x = torch.empty_like(x)
    size = x.element_size()
    parts: list[torch.Tensor] = []  # one fp32 weight-gradient accumulator per thread's rows, summed after

    def run(lo: int, hi: int) -> None:
        acc = torch.zeros(dim, dtype=torch.float32) if need_weight_grad else None
        if acc is not None:
            parts.append(acc)
        fn(x.data_ptr() + lo * dim * size, weight.data_ptr(), inv_rms.data_ptr() + lo * 4, grad.data_ptr() + lo * dim * size,
           hi - lo, dim, grad_x.data_ptr() + lo * dim * size, acc.data_ptr() if acc is not None else None)

    c_library.run_in_row_parts(run, rows, x.numel())
    return grad_x, (torch.stack(parts).sum(0) if need_weight_grad else None)
