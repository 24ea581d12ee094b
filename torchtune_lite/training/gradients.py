"""Gradient scaling and clipping over the trainable parameters."""

from typing import Iterable, Optional, Union

import torch


def _full(norm: torch.Tensor) -> torch.Tensor:
    # With FSDP2 the gradients are DTensors and so is their norm; logging needs the plain value.
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


def scale_grads(params: Iterable[torch.nn.Parameter], scale: Union[float, torch.Tensor]) -> None:
    """Multiplies every existing gradient in place by `scale` (e.g. 1 / tokens in the accumulated step)."""
    for p in params:
        if p.grad is not None:
            p.grad.mul_(scale.to(p.grad.device) if isinstance(scale, torch.Tensor) else scale)


def clip_grad_norm_(params: Iterable[torch.nn.Parameter], max_norm: Optional[float]) -> torch.Tensor:
    """Clips the total L2 norm of the gradients to `max_norm` (None: no clipping, only measure it).

    Returns the total norm before clipping, a 0-dim fp32 tensor for logging (0 if no parameter has a gradient).
    """
    params = [p for p in params if p.grad is not None]
    grads = [p.grad for p in params]
    if not grads:
        return torch.zeros(())
    if max_norm is None:
        return _full(torch.nn.utils.get_total_norm(grads)).float()
    if max_norm <= 0:
        raise ValueError(f"clip_grad_norm={max_norm} must be positive (or null to disable clipping)")
    norm = torch.nn.utils.get_total_norm(grads)
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
    return _full(norm).float()
