"""An NF4 tensor's fields, read and written in one place.

torchao's ``NF4Tensor`` is five inner tensors (``NF4_FIELDS``) plus a layout: shape, dtype and block
sizes. The kernels (a fresh quantization), the NF4 cache (a file), allocation on a device (a meta-built
model) and FSDP2 sharding (a rank's chunk) all build one from those parts; they do it here.
"""

from __future__ import annotations

from typing import Any

import torch

from torchtune_lite._torchao import NF4Tensor, SubclassTensorArgs

NF4_FIELDS = ("quantized_data", "quantized_scalers", "quantization_factor", "scaler_mean", "nf4")


def nf4_layout(weight: NF4Tensor) -> dict[str, Any]:
    """JSON-serializable layout of ``weight``: shape, dtype name, block sizes and block count."""
    return {
        "shape": list(weight.shape), "dtype": str(weight.dtype).removeprefix("torch."), "block_size": weight.block_size,
        "scaler_block_size": weight.scaler_block_size, "n_blocks": weight.n_blocks,
    }  # fmt: skip


def nf4_fields(weight: NF4Tensor) -> dict[str, torch.Tensor]:
    """The five inner tensors of ``weight`` by field name (no copies)."""
    return {field: getattr(weight, field) for field in NF4_FIELDS}


def nf4_from_fields(
    layout: dict[str, Any],
    fields: dict[str, torch.Tensor],
    *,
    like: torch.Tensor | None = None,
    requires_grad: bool = False,
) -> NF4Tensor:
    """An NF4Tensor from its five inner tensors (on the device it will live on, which it takes) and its
    ``layout`` (as ``nf4_layout`` returns). Its recorded strides are contiguous, or ``like``'s (torchao
    records the strides and offset of the weight it quantized)."""
    shape = torch.Size(layout["shape"])
    stride, offset = (like.stride(), like.storage_offset()) if like is not None else (torch.empty(shape, device="meta").stride(), 0)
    dtype = layout["dtype"] if isinstance(layout["dtype"], torch.dtype) else getattr(torch, layout["dtype"])
    meta = SubclassTensorArgs(shape, tuple(stride), offset, dtype, fields["quantized_data"].device, requires_grad)
    return NF4Tensor(
        meta, layout["block_size"], layout["n_blocks"], layout["scaler_block_size"], fields["quantized_scalers"],
        fields["quantization_factor"], fields["scaler_mean"], fields["quantized_data"], nf4=fields["nf4"],
    )  # fmt: skip


__all__ = ["NF4_FIELDS", "nf4_fields", "nf4_from_fields", "nf4_layout"]
