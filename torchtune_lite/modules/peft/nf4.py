"""NF4 (4-bit NormalFloat, QLoRA) quantize / dequantize / linear: the public entry points.

The weights stay torchao ``NF4Tensor``s (checkpoints, FSDP2 and state-dict hooks rely on its fields);
the arithmetic runs in ``nf4_kernels`` (lookup-table kernels, bit-identical to torchao and 10x+ faster).
torchao itself remains the path for what the kernels do not cover: meta tensors (models built on
``torch.device("meta")``), odd block sizes and dtypes other than bf16/fp16/fp32.
"""

from typing import Optional

import torch

from torchtune_lite._torchao import NF4Tensor
from torchtune_lite.modules.peft import nf4_kernels
from torchtune_lite.modules.peft.nf4_kernels import NF4ShapeError

__all__ = ["NF4ShapeError", "dequantize_nf4", "linear_nf4", "nf4_block_sizes", "quantize_nf4"]


def nf4_block_sizes(numel: int, block_size: int = 64, scaler_block_size: int = 256) -> Optional[tuple[int, int]]:
    """Valid ``(block_size, scaler_block_size)`` for a weight of ``numel`` elements under torchao's NF4 layout:
    the given defaults when they fit, else the largest valid smaller ones; None when nothing sensible fits."""
    return nf4_kernels.nf4_block_sizes(numel, block_size, scaler_block_size)


def quantize_nf4(weight: torch.Tensor, block_size: int = 64, scaler_block_size: int = 256) -> NF4Tensor:
    """NF4 copy of ``weight: [out, in]`` (or 1-D): same fields and bits as torchao ``to_nf4``, faster.

    Raises NF4ShapeError (a ValueError) when the sizes do not fit; pick them with ``nf4_block_sizes``.
    """
    return nf4_kernels.quantize_nf4(weight, block_size, scaler_block_size)


def dequantize_nf4(weight: NF4Tensor) -> torch.Tensor:
    """Plain tensor equal to ``weight.get_original_weight()`` (original dtype/shape/device), faster."""
    return nf4_kernels.dequantize_nf4(weight)


def linear_nf4(input: torch.Tensor, weight: NF4Tensor) -> torch.Tensor:
    """``input: [..., in]`` @ dequantized ``weight: [out, in]``.T -> ``[..., out]``.

    Gradient flows to ``input`` only (the base weight is frozen); only the 4-bit weight is saved for
    backward, which dequantizes it again.
    """
    return nf4_kernels.linear_nf4(input, weight)
