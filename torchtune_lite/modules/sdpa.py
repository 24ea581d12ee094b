"""Which attention kernel runs, so attention on CPU runs at matmul speed in training, forward and backward.

`attention(q, k, v, ...)` is `F.scaled_dot_product_attention` with these choices:

* Grouped-query k/v heads: the batched-matmul path below multiplies each k/v head with its group's query
  heads stacked as one matrix, so k and v are never copied per query head; for the other paths they are
  expanded to one per query head here (torch's CPU flash kernel takes `enable_gqa`, but no other kernel does).
* On CPU in bf16/fp16, when one layer's score matrix [b, h, s, kv] is small (short sequences: up to
  about 512 tokens at batch 4 and 8 heads), the matmuls of attention run as whole batched GEMMs in the
  compute dtype (`_MatmulAttention`), which is faster than torch's flash kernel for CPU at these sizes
  (its backward especially). It keeps only the probabilities, in the compute dtype, for backward, like
  the math reference.
* fp32, longer sequences, dropout and other devices go to `F.scaled_dot_product_attention`, whose flash
  kernels never hold the [b, h, s, kv] scores (on CPU: causal, bool and float masks, fp32 and bf16).
* Soft-capped scores (Gemma-2's `cap * tanh(scores / cap)`) fit no fused kernel: they take the math path
  (`softcapped_attention`), which holds the scores like Hugging Face's eager attention. Everything else
  keeps the paths above.
"""

from typing import Optional

import torch
import torch.nn.functional as F

from torchtune_lite.kernels import attention_softmax

# One layer's fp32 score matrix up to this size takes the batched-matmul path on CPU, in these dtypes.
# fp32 stays on the flash kernel: there the batched path, C softmax included, took 1.07-1.12x its time (one
# attention block at 4 x 256 and 2 x 512 tokens, 1 thread, in-process pairs).
MATMUL_SCORES_MAX_BYTES = 32 * 2**20
MATMUL_DTYPES = (torch.bfloat16, torch.float16)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: Optional[torch.Tensor] = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: Optional[float] = None,
    softcap: Optional[float] = None,
) -> torch.Tensor:
    """q: [b, h, s, d], k and v: [b, h_kv, kv, d] (h_kv divides h) -> [b, h, s, d] in q's dtype.

    mask: bool (True = may attend) or additive float, broadcastable to [b, h, s, kv]; is_causal: the
    standard lower-triangular mask instead (with `mask` None). scale: multiplies q k^T (default
    1/sqrt(d); Gemma: 1/sqrt(query_pre_attn_scalar)). softcap: scores become `softcap * tanh(scores / softcap)`
    before the mask.
    """
    k, v = k.to(q.dtype), v.to(q.dtype)
    if softcap is None and use_matmul_attention(q, k, dropout_p):
        fused = attention_softmax.runs_on(q, mask)  # decided here, where torch.compile sees a constant
        return _MatmulAttention.apply(q, k, v, mask, is_causal, scale, fused)  # takes grouped k/v heads as they are
    if k.size(1) != q.size(1):
        groups = q.size(1) // k.size(1)
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    if softcap is not None:
        return softcapped_attention(q, k, v, mask=mask, is_causal=is_causal, dropout_p=dropout_p, scale=scale, softcap=softcap)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale)


def softcapped_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: Optional[torch.Tensor],
    is_causal: bool,
    dropout_p: float,
    scale: Optional[float],
    softcap: float,
) -> torch.Tensor:
    """The math path with soft-capped scores; q, k, v: [b, h, s|kv, d] with as many k/v heads as q heads.

    The softmax runs in fp32 (as Hugging Face's eager Gemma attention does) and autograd keeps the scores.
    """
    scale = q.size(-1) ** -0.5 if scale is None else scale
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # [b, h, s, kv]
    scores = torch.tanh(scores / softcap) * softcap
    if is_causal:
        mask = torch.ones(q.size(2), k.size(2), dtype=torch.bool, device=q.device).tril()
    if mask is not None and mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask is not None:
        scores = scores + mask
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).nan_to_num(0.0).to(q.dtype)  # all-masked rows -> 0
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p)
    return torch.matmul(probs, v)


def use_matmul_attention(q: torch.Tensor, k: torch.Tensor, dropout_p: float) -> bool:
    """True where `_MatmulAttention` is the faster kernel: CPU, 16-bit, no dropout, small score matrix."""
    b, h, s, _ = q.shape
    small = b * h * s * k.size(2) * 4 <= MATMUL_SCORES_MAX_BYTES
    return q.device.type == "cpu" and q.dtype in MATMUL_DTYPES and dropout_p == 0.0 and small


class _MatmulAttention(torch.autograd.Function):
    """softmax(scale * q k^T + mask) v with batched GEMMs and the softmax in the compute dtype.

    The softmax, with the mask and the scale folded in, is one fused C pass forward and one backward on CPU
    (`kernels.attention_softmax`); elsewhere torch's masked_fill, softmax and softmax backward. In bf16 the
    scores are rounded to bf16 before the softmax, as in Hugging Face's eager attention (the flash kernel keeps
    them in fp32). q, k, v are made contiguous once and saved so, with the probabilities P (compute dtype),
    as the math reference does: the batched GEMMs would otherwise copy the transposed head layout on every use.
    Rows with every key masked give zeros (as torch's math kernel does), not NaN.
    """

    @staticmethod
    def forward(ctx, q, k, v, mask, causal: bool, scale: Optional[float], fused: bool):  # type: ignore[override]
        scale = q.size(-1) ** -0.5 if scale is None else scale
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        # Query head j reads k/v head j // groups: [b, h, s, d] memory is [b, h_kv, groups * s, d], so each
        # k/v head meets its whole group in one GEMM and the [b, h, s, kv] results need no reordering.
        scores = torch.matmul(_by_kv_head(q, k), k.transpose(-1, -2)).view(*q.shape[:3], k.size(2))
        ctx.fused = fused
        probs = (
            attention_softmax.softmax_forward_(scores, scale, causal, mask) if fused
            else _torch_softmax(scores, scale, causal, mask)
        )
        out = torch.matmul(_by_kv_head(probs, k), v).view(q.shape)
        ctx.save_for_backward(q, k, v, probs)
        ctx.scale, ctx.causal = scale, causal
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        q, k, v, probs = ctx.saved_tensors
        grad_out = _by_kv_head(grad_out.contiguous(), k)
        grad_v = torch.matmul(_by_kv_head(probs, k).transpose(-1, -2), grad_out)  # sums over each group
        grad_probs = torch.matmul(grad_out, v.transpose(-1, -2)).view(probs.shape)
        if ctx.fused:
            grad_scores = attention_softmax.softmax_backward_(probs, grad_probs, ctx.scale, ctx.causal)
        else:
            # P * (dP - rowsum(dP * P)) in one fused pass; aten's op because torch has no public softmax backward.
            grad_scores = torch.ops.aten._softmax_backward_data(grad_probs, probs, -1, probs.dtype).mul_(ctx.scale)
        grad_scores = _by_kv_head(grad_scores, k)
        grad_q = torch.matmul(grad_scores, k).view(q.shape)
        grad_k = torch.matmul(grad_scores.transpose(-1, -2), _by_kv_head(q, k))
        return grad_q, grad_k, grad_v, None, None, None, None


def _by_kv_head(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Contiguous x: [b, h, s, n] viewed as [b, h_kv, (h / h_kv) * s, n], h_kv = k.size(1): each k/v head's
    query heads as one matrix (the identity view without grouping)."""
    b, h, s, n = x.shape
    return x.view(b, k.size(1), h // k.size(1) * s, n)


def _torch_softmax(scores: torch.Tensor, scale: float, causal: bool, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """softmax(scale * scores) over the keys `causal` or `mask` (bool or additive) leaves, by torch ops."""
    # Not in place: `scores` is a view of a matmul's output, and an in-place multiply there made inductor's
    # no_grad graph of a layer (e.g. DPO's reference forward under compile) take 3x as long to compile (75 s
    # against 25 s, tiny QLoRA model, cold cache). The later in-place ops act on this new tensor.
    scores = scores * scale
    if causal:
        mask = torch.ones(scores.size(-2), scores.size(-1), dtype=torch.bool, device=scores.device).tril()
    if mask is not None and mask.dtype == torch.bool:
        scores.masked_fill_(~mask, float("-inf"))
    elif mask is not None:
        scores.add_(mask)
    probs = torch.softmax(scores, dim=-1)
    # A row with no visible key (softmax over -inf: NaN) becomes zeros. Compiled code zeroes always (no
    # data-dependent branch); a causal mask leaves none.
    if mask is not None and mask.dtype == torch.bool and not causal:
        if torch.compiler.is_compiling() or not bool(mask.any(-1).all()):
            probs.nan_to_num_(0.0)
    return probs
