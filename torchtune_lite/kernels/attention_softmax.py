"""Attention's masked, scaled softmax and its backward, each one fused C pass over the score rows on CPU.

For `modules.sdpa`'s batched-matmul attention: the torch ops make a masked_fill, a softmax and two scale
multiplies (forward and backward) over [b, h, s, kv] or [b, h, s, d]; here the mask and the scale ride along
in the softmax's own passes (see `attention_softmax.c`). `runs_on` says where they run; elsewhere the caller
keeps its torch ops.
"""

import ctypes
from pathlib import Path
from typing import Optional

import torch

from torchtune_lite.kernels import c_library

_SOURCE = Path(__file__).with_name("attention_softmax.c")
_SUFFIX = {torch.bfloat16: "bf16", torch.float32: "f32"}
_P, _I64, _F32, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
_FORWARD_ARGS = [_P, _I64, _I64, _I64, _I64, _I64, _F32, _INT, _P, _I64, _I64]
_BACKWARD_ARGS = [_P, _P, _I64, _I64, _I64, _I64, _F32, _INT]


def runs_on(scores: torch.Tensor, mask: Optional[torch.Tensor]) -> bool:
    """Whether the kernels take the scores of `scores` ([b, h, s, kv], or q: same device and dtype) and this
    mask (None, or bool shared by the heads) here."""
    return (
        c_library.enabled()
        and scores.device.type == "cpu"
        and scores.dtype in _SUFFIX
        and (mask is None or (mask.dtype == torch.bool and (mask.dim() < 4 or mask.size(1) == 1)))
        and c_library.load(_SOURCE) is not None
    )


def softmax_forward_(scores: torch.Tensor, scale: float, causal: bool, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """scores: [b, h, s, kv] contiguous, overwritten with softmax(scale * scores) over the visible keys.

    causal: keys j <= i; mask: bool (True = visible) broadcastable to [b, 1, s, kv]. A query with no visible
    key gets zeros. Only where `runs_on(scores, mask)`.
    """
    b, h, s, kv = scores.shape
    fn = c_library.function(_SOURCE, f"ttl_attention_softmax_forward_{_SUFFIX[scores.dtype]}", _FORWARD_ARGS)
    mask_ptr, batch_stride, row_stride = None, 0, 0
    if mask is not None:
        mask = _per_batch_rows(mask, b, s, kv)
        mask_ptr, batch_stride, row_stride = mask.data_ptr(), mask.stride(0), mask.stride(1)
    rows, size = b * h * s, scores.element_size()

    def run(lo: int, hi: int) -> None:
        fn(scores.data_ptr() + lo * kv * size, lo, hi - lo, kv, s, h, scale, causal, mask_ptr, batch_stride, row_stride)

    c_library.run_in_row_parts(run, rows, scores.numel())
    return scores


def softmax_backward_(probs: torch.Tensor, grad_probs: torch.Tensor, scale: float, causal: bool) -> torch.Tensor:
    """grad_probs: [b, h, s, kv] contiguous, overwritten with the gradient of the pre-scale scores,
    `scale * P * (dP - rowsum(dP * P))`. Only after `softmax_forward_` made `probs` (contiguous)."""
    b, h, s, kv = probs.shape
    fn = c_library.function(_SOURCE, f"ttl_attention_softmax_backward_{_SUFFIX[probs.dtype]}", _BACKWARD_ARGS)
    size = probs.element_size()

    def run(lo: int, hi: int) -> None:
        fn(probs.data_ptr() + lo * kv * size, grad_probs.data_ptr() + lo * kv * size, lo, hi - lo, kv, s, scale, causal)

    c_library.run_in_row_parts(run, b * h * s, probs.numel())
    return grad_probs


def _per_batch_rows(mask: torch.Tensor, b: int, s: int, kv: int) -> torch.Tensor:
    """A bool mask broadcastable to [b, 1, s, kv] as a [b, s, kv] uint8 view (batch stride 0 when shared,
    keys contiguous), copying only when its layout needs it."""
    if mask.dim() == 4:
        mask = mask[:, 0]
    mask = mask.expand(b, s, kv)
    if mask.stride(-1) != 1:
        mask = mask.contiguous()
    return mask.view(torch.uint8)
