"""Which attention kernel runs, so attention on CPU runs at matmul speed in training, forward and backward.

`attention(q, k, v, ...)` is `F.scaled_dot_product_attention` with these choices:

* Grouped-query k/v heads are expanded to one per query head here. torch's CPU flash kernel takes
  `enable_gqa`, but no other kernel does; expanded inputs reach every kernel (and k/v are small).
* On CPU, when one layer's score matrix [b, h, s, kv] is small (short sequences: up to about 512
  tokens at batch 4 and 8 heads), the four matmuls of attention run as whole batched GEMMs in the
  compute dtype (`_MatmulAttention`), which is several times faster than torch's flash kernel for CPU
  at these sizes (backward especially). It keeps only the probabilities, in the compute dtype, for
  backward, like the math reference, and none of its fp32 intermediates.
* Longer sequences, dropout and other devices go to `F.scaled_dot_product_attention`, whose flash
  kernels never hold the [b, h, s, kv] scores (on CPU: causal, bool and float masks, fp32 and bf16).
"""

from typing import Optional

import torch
import torch.nn.functional as F

# One layer's fp32 score matrix up to this size takes the batched-matmul path on CPU.
MATMUL_SCORES_MAX_BYTES = 32 * 2**20


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: Optional[torch.Tensor] = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """q: [b, h, s, d], k and v: [b, h_kv, kv, d] (h_kv divides h) -> [b, h, s, d] in q's dtype.

    mask: bool (True = may attend) or additive float, broadcastable to [b, h, s, kv]; is_causal: the
    standard lower-triangular mask instead (with `mask` None).
    """
    k, v = k.to(q.dtype), v.to(q.dtype)
    if k.size(1) != q.size(1):
        groups = q.size(1) // k.size(1)
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    if use_matmul_attention(q, k, dropout_p):
        if is_causal:
            mask = torch.ones(q.size(2), k.size(2), dtype=torch.bool, device=q.device).tril()  # top-left aligned, as torch's is_causal
        return _MatmulAttention.apply(q, k, v, mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)


def use_matmul_attention(q: torch.Tensor, k: torch.Tensor, dropout_p: float) -> bool:
    """True where `_MatmulAttention` is the faster kernel: CPU, no dropout, small score matrix."""
    b, h, s, _ = q.shape
    return q.device.type == "cpu" and dropout_p == 0.0 and b * h * s * k.size(2) * 4 <= MATMUL_SCORES_MAX_BYTES


class _MatmulAttention(torch.autograd.Function):
    """softmax(q k^T / sqrt(d) + mask) v with batched GEMMs in the compute dtype and an fp32 softmax.

    Saves q, k, v, the output and the probabilities P (compute dtype). Backward uses
    dS = P * (dP - rowsum(dO * O)), the identity flash attention's backward uses too.
    Rows with every key masked give zeros (as torch's math kernel does), not NaN.
    """

    @staticmethod
    def forward(ctx, q, k, v, mask):  # type: ignore[override]
        scale = q.size(-1) ** -0.5
        scores = torch.matmul(q, k.transpose(-1, -2)).float()  # [b, h, s, kv]
        if mask is not None:
            if mask.dtype == torch.bool:
                scores.masked_fill_(~mask, float("-inf"))
                scores.mul_(scale)
            else:
                scores.mul_(scale).add_(mask)
        else:
            scores.mul_(scale)
        probs = torch.softmax(scores, dim=-1)
        if mask is not None:
            probs = probs.nan_to_num_(0.0)  # rows with no key allowed: softmax of all -inf
        probs = probs.to(q.dtype)
        out = torch.matmul(probs, v)
        ctx.save_for_backward(q, k, v, out, probs)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        q, k, v, out, probs = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_v = torch.matmul(probs.transpose(-1, -2), grad_out)
        grad_probs = torch.matmul(grad_out, v.transpose(-1, -2)).float()
        row = (grad_out.float() * out.float()).sum(-1, keepdim=True)  # rowsum(dP * P) without forming it
        grad_scores = grad_probs.sub_(row).mul_(probs).mul_(ctx.scale).to(q.dtype)
        grad_q = torch.matmul(grad_scores, k)
        grad_k = torch.matmul(grad_scores.transpose(-1, -2), q)
        return grad_q, grad_k, grad_v, None
