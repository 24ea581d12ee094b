"""Quantization: NF4 (QLoRA's 4-bit NormalFloat) kernels and the NF4 tensor layout.

The weights stay torchao ``NF4Tensor``s (checkpoints, FSDP2 and state-dict hooks rely on its fields);
the arithmetic runs in ``nf4_kernels`` (lookup tables, or the fused C pass of ``kernels/nf4.c``, bit-identical to torchao
and 10x+ faster); ``nf4_layout`` is the one place an NF4 tensor is taken apart or assembled (the NF4 cache, a file of
those fields, is a checkpoint: ``torchtune_lite.checkpointing.nf4_cache``).
"""

from torchtune_lite.quantization.nf4_kernels import (
    NF4ShapeError,
    dequantize_nf4,
    linear_nf4,
    nf4_block_sizes,
    quantize_nf4,
)
from torchtune_lite.quantization.nf4_layout import NF4_FIELDS, nf4_fields, nf4_from_fields, nf4_layout

__all__ = [
    "NF4_FIELDS",
    "NF4ShapeError",
    "dequantize_nf4",
    "linear_nf4",
    "nf4_block_sizes",
    "nf4_fields",
    "nf4_from_fields",
    "nf4_layout",
    "quantize_nf4",
]
