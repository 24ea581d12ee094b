"""Gradient scaling and clipping over the trainable parameters."""

from typing import Iterable, Optional

import torch


def scale_grads(params: Iterable[torch.nn.Parameter], scale: float) -> None:
    for p in params:
        if p.grad is not None:
            p.grad.mul_(scale)


def clip_grad_norm_(params: Iterable[torch.nn.Parameter], max_norm: Optional[float]) -> torch.Tensor:
    """Clips to `max_norm` (None: no clipping) and returns the total norm before clipping, for logging."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return torch.zeros(())
    if max_norm is None:
        return torch.nn.utils.get_total_norm([p.grad for p in params])
    return torch.nn.utils.clip_grad_norm_(params, max_norm)
