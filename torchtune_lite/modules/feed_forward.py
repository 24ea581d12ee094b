"""Gated feed-forward block: SwiGLU (Llama, Qwen, Mistral) or GeGLU with tanh-approximated GELU (Gemma)."""

import functools
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from torchtune_lite.kernels import silu_mul

# Gemma's `gelu_pytorch_tanh`
gelu_tanh = functools.partial(F.gelu, approximate="tanh")


class FeedForward(nn.Module):
    """`w2(act(w1(x)) * w3(x))`. Any module mapping the right sizes works as a projection (e.g. `LoRALinear`).

    With SwiGLU on CPU, `silu(gate) * up` and its backward are fused C kernels (`kernels/silu_mul.c`, fp32
    math, one rounding); other activations, devices, torch.compile and machines without a C compiler take
    the torch ops.

    Args:
        gate_proj: `w1`, dim -> hidden.
        down_proj: `w2`, hidden -> dim.
        up_proj: `w3`, dim -> hidden.
        activation: applied to the gate; `F.silu` (SwiGLU) or `gelu_tanh` (GeGLU).
    """

    def __init__(
        self,
        *,
        gate_proj: nn.Module,
        down_proj: nn.Module,
        up_proj: nn.Module,
        activation: Callable[[torch.Tensor], torch.Tensor] = F.silu,
    ) -> None:
        super().__init__()
        self.w1 = gate_proj
        self.w2 = down_proj
        self.w3 = up_proj
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [b, s, dim] -> [b, s, dim]."""
        gate, up = self.w1(x), self.w3(x)
        if self.activation is F.silu and silu_mul.runs_on(gate, up):
            return self.w2(_SiluMul.apply(gate, up))
        return self.w2(self.activation(gate) * up)


class _SiluMul(torch.autograd.Function):
    """`silu(gate) * up` through the C kernels; saves gate and up only."""

    @staticmethod
    def forward(ctx, gate, up):  # type: ignore[override]
        ctx.save_for_backward(gate, up)
        return silu_mul.silu_mul_forward(gate, up)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        gate, up = ctx.saved_tensors
        return silu_mul.silu_mul_backward(gate, up, grad.to(gate.dtype))
