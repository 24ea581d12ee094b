"""SwiGLU feed-forward block."""

import torch
import torch.nn.functional as F
from torch import nn


class FeedForward(nn.Module):
    """`w2(silu(w1(x)) * w3(x))`. Any module mapping the right sizes works as a projection (e.g. `LoRALinear`).

    Args:
        gate_proj: `w1`, dim -> hidden.
        down_proj: `w2`, hidden -> dim.
        up_proj: `w3`, dim -> hidden.
    """

    def __init__(self, *, gate_proj: nn.Module, down_proj: nn.Module, up_proj: nn.Module) -> None:
        super().__init__()
        self.w1 = gate_proj
        self.w2 = down_proj
        self.w3 = up_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [b, s, dim] -> [b, s, dim]."""
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
