"""SwiGLU's `silu(gate) * up`, forward and backward, each one fused C pass on CPU (see `silu_mul.c`).

The torch ops take a silu, a multiply and, in backward, two multiplies and silu's backward, each a pass
over [tokens, hidden] (the MLP's widest activations), and autograd keeps silu(gate) besides gate and up.
`runs_on` says where the kernels run; elsewhere `modules.FeedForward` keeps its torch ops.
"""

import ctypes
from pathlib import Path

import torch

from torchtune_lite.kernels import c_library

_SOURCE = Path(__file__).with_name("silu_mul.c")
_SUFFIX = {torch.bfloat16: "bf16", torch.float32: "f32"}
_P, _I64 = ctypes.c_void_p, ctypes.c_int64


def runs_on(gate: torch.Tensor, up: torch.Tensor) -> bool:
    """Whether the kernels take these two activations here (CPU, same bf16 or fp32 dtype and shape)."""
    return (
        c_library.enabled()
        and gate.device.type == "cpu"
        and gate.dtype in _SUFFIX
        and up.dtype == gate.dtype
        and up.shape == gate.shape
        and c_library.load(_SOURCE) is not None
    )


def silu_mul_forward(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up, same shape and dtype. Only where `runs_on(gate, up)`."""
    fn = c_library.function(_SOURCE, f"ttl_silu_mul_forward_{_SUFFIX[gate.dtype]}", [_P, _P, _I64, _P])
    gate, up = gate.contiguous(), up.contiguous()
    out = torch.empty_like(gate)
    _over_elements(lambda lo, n, size: fn(gate.data_ptr() + lo * size, up.data_ptr() + lo * size, n,
                                          out.data_ptr() + lo * size), gate)
    return out


def silu_mul_backward(gate: torch.Tensor, up: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dL/dgate, dL/dup) from dL/d(silu(gate) * up) = grad. Only after `silu_mul_forward` ran on them."""
    fn = c_library.function(_SOURCE, f"ttl_silu_mul_backward_{_SUFFIX[gate.dtype]}", [_P, _P, _P, _I64, _P, _P])
    gate, up, grad = gate.contiguous(), up.contiguous(), grad.contiguous()
    grad_gate, grad_up = torch.empty_like(gate), torch.empty_like(up)
    _over_elements(lambda lo, n, size: fn(gate.data_ptr() + lo * size, up.data_ptr() + lo * size,
                                          grad.data_ptr() + lo * size, n, grad_gate.data_ptr() + lo * size,
                                          grad_up.data_ptr() + lo * size), gate)
    return grad_gate, grad_up


def _over_elements(run, like: torch.Tensor) -> None:
    """`run(first, count, element_size)` over `like`'s elements, split in parts over torch's threads."""
    size, last = like.element_size(), like.size(-1) if like.dim() else 1
    rows = like.numel() // max(1, last)
    c_library.run_in_row_parts(lambda lo, hi: run(lo * last, (hi - lo) * last, size), rows, like.numel())
