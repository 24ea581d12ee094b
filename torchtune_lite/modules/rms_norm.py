"""Root-mean-square layer norm (Llama's only normalisation; Gemma's with a (1 + weight) scale)."""

import torch
from torch import nn

from torchtune_lite.kernels import rms_norm_backward, rms_norm_forward
from torchtune_lite.kernels.rms_norm import runs_on


class RMSNorm(nn.Module):
    """`x / rms(x) * scale`, computed in fp32 and cast back so bf16 activations keep their precision.

    On CPU the forward and backward are fused C kernels (`kernels/rms_norm.c`, the same fp32 math); other
    devices, fp16, torch.compile and machines without a C compiler take the torch ops below.

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
        if runs_on(x):
            return _FusedRMSNorm.apply(x, self._weight(), self.eps)
        x_fp32 = x.float()
        normed = x_fp32 * torch.rsqrt(x_fp32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self._weight()).to(x.dtype)

    def _weight(self) -> torch.Tensor:
        """The fp32 factor applied after normalising: scale, or 1 + scale."""
        return 1.0 + self.scale.float() if self.unit_offset else self.scale.float()


class _FusedRMSNorm(torch.autograd.Function):
    """RMSNorm through the C kernels, given the fp32 factor `weight` (autograd takes its gradient on to
    `scale`); saves x and one fp32 inverse RMS per row for backward."""

    @staticmethod
    def forward(ctx, x, weight, eps: float):  # type: ignore[override]
        x, weight = x.contiguous(), weight.contiguous()
        # y is a tensor of its own, not a view: FSDP2 warns about a view returned by a wrapped module (the
        # final norm's output is the model's), since an in-place op on one would skip its backward hook.
        y, inv_rms = rms_norm_forward(x, weight, eps)
        ctx.save_for_backward(x, weight, inv_rms)
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, weight, inv_rms = ctx.saved_tensors
        grad_x, grad_weight = rms_norm_backward(x, weight, inv_rms, grad.to(x.dtype).contiguous(), ctx.needs_input_grad[1])
        return grad_x, grad_weight, None
