"""Training dtypes."""

import contextlib
import warnings
from typing import Iterator, Optional

import torch

_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32}


def has_fast_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 matmuls natively: CUDA GPUs that support bf16, and CPUs with
    AVX512-BF16 or AMX (oneDNN's bf16 kernels). Elsewhere torch emulates bf16 GEMMs, 10-100x slower than fp32."""
    device = torch.device(device)
    if device.type == "cuda":
        # Without `including_emulation=False` this is True on pre-Ampere GPUs (V100, T4), which emulate bf16.
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        # The check torch's own CPU matmul dispatch uses to pick oneDNN's bf16 kernels (no public equivalent).
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return True


def check_dtype_name(name: Optional[str]) -> Optional[torch.dtype]:
    """The dtype `name` stands for (None for "auto" or None); ValueError for names we do not train in."""
    name = "auto" if name is None else str(name).lower()
    if name in ("fp16", "float16", "half"):
        raise ValueError(f"dtype={name} is not supported for training (fp16 needs loss scaling): use dtype=bf16, fp32 or auto")
    if name == "auto":
        return None
    if name not in _DTYPES:
        raise ValueError(f"dtype={name} is not a training dtype: use dtype=bf16, fp32 or auto")
    return _DTYPES[name]


def get_dtype(name: Optional[str], device: torch.device) -> torch.dtype:
    """The parameter/compute dtype for `name` on `device`: "bf16", "fp32", or "auto" (the default when None):
    bf16 where the device computes it natively (see `has_fast_bf16`), else fp32.

    fp16 is refused: without loss scaling its gradients underflow, and bf16 has fp32's range on every GPU
    that supports it. bf16 on CUDA is checked against the device; on a CPU without native bf16 it is
    allowed (it halves memory) with a warning that it is slow.
    """
    dtype = check_dtype_name(name)
    if dtype is None:
        return torch.bfloat16 if has_fast_bf16(device) else torch.float32
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"dtype=bf16 but {torch.cuda.get_device_name(device)} does not support bf16: use dtype=fp32")
    if dtype == torch.bfloat16 and not has_fast_bf16(device):
        where = "a CPU without native bf16 (no AVX512-BF16 or AMX)" if device.type == "cpu" else "a GPU that emulates bf16"
        warnings.warn(
            f"dtype=bf16 on {where}: matmuls will be many times slower than fp32; dtype=auto picks fp32 here",
            stacklevel=2,
        )
    return dtype


def enable_tf32_for_fp32(device: torch.device, dtype: torch.dtype) -> bool:
    """fp32 training on CUDA runs its matmuls and convolutions on TF32 tensor cores (Ampere and newer; 8x the
    fp32 rate, 10-bit mantissa inputs with fp32 accumulation). Returns whether it did."""
    if torch.device(device).type != "cuda" or dtype != torch.float32:
        return False
    # The global setting, not torch>=2.9's per-backend `fp32_precision`: after a per-backend set,
    # `torch.get_float32_matmul_precision()` (which inductor reads) raises. cuDNN convolutions use TF32 by default.
    torch.set_float32_matmul_precision("high")
    return True


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
