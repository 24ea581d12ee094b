"""Training dtypes."""

import contextlib
from typing import Iterator, Optional

import torch

_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def get_dtype(name: Optional[str], device: torch.device) -> torch.dtype:
    """"bf16" (default) or "fp32". fp16 is refused: without loss scaling it under/overflows in training."""
    name = name or "bf16"
    if name not in _DTYPES:
        raise ValueError(f"dtype={name} is not supported for training: use bf16 or fp32")
    dtype = _DTYPES[name]
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"dtype=bf16 but {torch.cuda.get_device_name(device)} has no bf16 support: use dtype=fp32")
    return dtype


@contextlib.contextmanager
def set_default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Parameters created inside are `dtype` (so a model is never built in fp32 first)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
