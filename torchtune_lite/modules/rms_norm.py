"""Root-mean-square layer norm (Llama's only normalisation; Gemma's with a (1 + weight) scale)."""

import torch
from torch import nn


class RMSNorm(nn.Module):
    """`x / rms(x) * scale`, computed in fp32 and cast back so bf16 activations keep their precision.

    Args:
        dim: size of the last dimension of the input.
        eps: added to the mean square before the square root.
        unit_offset: Gemma's form, `x / rms(x) * (1 + scale)` with `scale` starting at zero; `scale` then
            holds exactly what Gemma checkpoints store, so conversion only renames it.
    """

    def __init__(self, dim: int, eps: float = 1e-6, unit_offset: bool = False) -> None:
        super().__init__()
        self.eps = eps
        self.unit_offset = unit_offset
        self.scale = nn.Parameter(torch.zeros(dim) if unit_offset else torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., dim] -> [..., dim] in x's dtype."""
        x_fp32 = x.float()
        normed = x_fp32 * torch.rsqrt(x_fp32.pow(2).mean(-1, keepdim=True) + self.eps)
        scale = 1.0 + self.scale.float() if self.unit_offset else self.scale.float()
        return (normed * scale).to(x.dtype)
