"""State-dict hooks that make QLoRA models save and load like plain ones."""

import functools
from typing import Any, Optional

import torch
from torch import nn

from torchtune_lite._torchao import NF4Tensor
from torchtune_lite.quantization import dequantize_nf4


def reparametrize_as_dtype_state_dict_post_hook(
    module: nn.Module,
    state_dict: dict[str, Any],
    prefix: str,
    local_metadata: Any,
    *args: Any,
    dtype: Optional[torch.dtype] = torch.bfloat16,
    offload_to_cpu: bool = True,
) -> None:
    """Replaces every NF4Tensor in `state_dict` (in place) by a plain tensor of `dtype`, on CPU if `offload_to_cpu`.

    `dtype=None` keeps each weight's original (pre-quantization) dtype. Tensors are converted one at a time,
    so at most one dequantized weight is on the accelerator at once.
    """
    for key, value in state_dict.items():
        if not isinstance(value, NF4Tensor):
            continue
        # rebinding `plain` frees each intermediate copy before the next weight is dequantized
        plain = dequantize_nf4(value)
        if dtype is not None:
            plain = plain.to(dtype)
        if offload_to_cpu:
            plain = plain.cpu()
        state_dict[key] = plain


def register_reparametrize_state_dict_hook(
    model: nn.Module, dtype: Optional[torch.dtype] = None, offload_to_cpu: bool = True
) -> None:
    """Makes `model.state_dict()` return plain tensors (original dtype by default) instead of NF4Tensors."""
    model.register_state_dict_post_hook(
        functools.partial(reparametrize_as_dtype_state_dict_post_hook, dtype=dtype, offload_to_cpu=offload_to_cpu)
    )
