"""Cross-entropy and its logits-gradient for rows of logits, fused into one C pass per row on CPU.

`cross_entropy_rows_(logits, targets)` overwrites `logits: [rows, vocab]` with softmax - one_hot and
returns each row's loss in fp32: what the fused loss needs per chunk, in one read and one write of the
logits where the torch ops (upcast, log-softmax, exp, downcast) make about six passes, several in fp32.
On a 512 x 32000 bf16 chunk, one thread: 16 ms against 87 ms for the torch ops. Where the kernel cannot
run, the function returns None and the caller takes the torch path; the two agree to fp32 rounding.
"""

import ctypes
from pathlib import Path
from typing import Optional

import torch

from torchtune_lite.kernels import c_library

_SOURCE = Path(__file__).with_name("cross_entropy_rows.c")
_FUNCTIONS = {torch.bfloat16: "ttl_cross_entropy_rows_bf16", torch.float32: "ttl_cross_entropy_rows_f32"}
_ARGTYPES = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]


def cross_entropy_rows_(logits: torch.Tensor, targets: torch.Tensor) -> Optional[torch.Tensor]:
    """logits: [rows, vocab] (contiguous, bf16 or fp32, CPU), targets: [rows] int64 in [0, vocab).

    Overwrites `logits` with softmax(logits) - one_hot(targets) and returns the per-row loss
    `logsumexp(row) - row[target]`: [rows] fp32. Returns None, touching nothing, where the kernel cannot run.
    """
    if not (
        c_library.enabled()
        and logits.device.type == "cpu"
        and logits.dtype in _FUNCTIONS
        and logits.dim() == 2
        and logits.is_contiguous()
        and not logits.requires_grad
        and targets.dtype == torch.int64
        and targets.shape == logits.shape[:1]
    ):
        return None
    kernel = c_library.function(_SOURCE, _FUNCTIONS[logits.dtype], _ARGTYPES)
    if kernel is None:
        return None
    targets = targets.contiguous()
    rows, vocab = logits.shape
    loss = torch.empty(rows, dtype=torch.float32)
    size = logits.element_size()

    def run(lo: int, hi: int) -> None:
        kernel(logits.data_ptr() + lo * vocab * size, hi - lo, vocab, targets.data_ptr() + lo * 8, loss.data_ptr() + lo * 4)

    c_library.run_in_row_parts(run, rows, logits.numel())
    return loss
