"""Root-mean-square layer norm (Llama's only normalisation)."""

import torch
from torch import nn


class RMSNorm(nn.Module):
    """`x / rms(x) * scale`, computed in fp32 and cast back so bf16 activations keep their precision.

    Args:
        dim: size of the last dimension of the input.
        eps: added to the mean square before the square root.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., dim] -> [..., dim] in x's dtype."""
        x_fp32 = x.float()
        normed = x_fp32 * torch.rsqrt(x_fp32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.scale.float()).to(x.dtype)
