"""Training dtypes."""

import contextlib
from typing import Iterator, Optional

import torch

_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32}


def get_dtype(name: Optional[str], device: torch.device) -> torch.dtype:
    """The parameter/compute dtype for `name` ("bf16", the default when None, or "fp32") on `device`.

    fp16 is refused: without loss scaling its gradients underflow, and bf16 has fp32's range on every GPU
    that supports it. bf16 on CUDA is checked against the device; CPU always supports it.
    """
    name = "bf16" if name is None else str(name).lower()
    if name in ("fp16", "float16", "half"):
        raise ValueError(f"dtype={name} is not supported for training (fp16 needs loss scaling): use dtype=bf16 or dtype=fp32")
    if name not in _DTYPES:
        raise ValueError(f"dtype={name} is not a training dtype: use dtype=bf16 or dtype=fp32")
    dtype = _DTYPES[name]
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"dtype=bf16 but {torch.cuda.get_device_name(device)} does not support bf16: use dtype=fp32")
    return dtype


@contextlib.contextmanager
def set_default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Floating-point tensors created inside are `dtype` (a model is built in bf16 directly, never in fp32
    first); the previous default is restored on exit, also after an error."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
