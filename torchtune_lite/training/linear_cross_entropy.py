"""Output projection and cross-entropy fused, chunk by chunk of tokens, gradients written in the same pass.

A plain `F.cross_entropy(output(h).float(), y)` holds [tokens, vocab] logits in the compute dtype, a
fp32 copy, its log-softmax and, in backward, a zero-filled gradient of the same size: at vocab 128256 and
4 x 2048 tokens that is several GiB. Here each chunk of tokens is projected in the compute dtype,
reduced in fp32 inside the chunk (log-softmax, then the softmax minus one-hot in place), and its gradient
is multiplied into the gradients of the hidden states and of the output weight before the next chunk, so
only one chunk's logits ever exist. Backward only scales the stored gradients by the incoming scalar.

Tokens whose label is `ignore_index` contribute nothing, so they are dropped before the projection
(packed or prompt-masked batches skip that share of the largest matmul).
"""

from typing import Optional

import torch

from torchtune_lite.kernels import cross_entropy_rows_


def fused_linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, ignore_index: int, chunk_tokens: int
) -> torch.Tensor:
    """Summed fp32 cross-entropy of `hidden @ weight.T` against `labels`.

    hidden: [n, d]; weight: [vocab, d] (trained or frozen); labels: [n]. Returns a 0-dim fp32 tensor.
    chunk_tokens: rows projected at once (their fp32 logits are the peak temporary).
    """
    return _LinearCrossEntropy.apply(hidden, weight, labels, ignore_index, chunk_tokens)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, ignore_index: int, chunk_tokens: int):  # type: ignore[override]
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        keep = (labels != ignore_index).nonzero().squeeze(1)
        scored = keep.numel()
        h = _scored_rows(hidden, keep)  # [m, d]: the scored tokens, then zero rows up to a multiple of 64
        targets = _scored_rows(labels, keep)
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(h) if need_hidden else None
        grad_w: Optional[torch.Tensor] = None
        for start in range(0, h.size(0), chunk_tokens):
            hc, yc = h[start : start + chunk_tokens], targets[start : start + chunk_tokens]
            chunk_loss, dlogits = _loss_and_logits_grad(hc @ weight.t(), yc, hidden.dtype, max(scored - start, 0))
            loss += chunk_loss
            if not (need_hidden or need_weight):
                continue
            if need_hidden:
                torch.mm(dlogits, weight, out=grad_h[start : start + chunk_tokens])
            if need_weight:
                grad_w = dlogits.t() @ hc if grad_w is None else grad_w.addmm_(dlogits.t(), hc)
        if need_hidden:
            # Unscored tokens get zero gradient; [n, d] is small next to [n, vocab]. (A padding row's gradient is
            # dropped here, and it adds exactly zero to the weight's: its hidden state is zero.)
            full = torch.zeros_like(hidden)
            grad_h = full.index_copy_(0, keep, grad_h[:scored])
        if need_weight and grad_w is None:  # every token ignored
            grad_w = torch.zeros_like(weight)
        ctx.save_for_backward(grad_h, grad_w)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):  # type: ignore[override]
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_loss.to(grad_h.dtype if grad_h is not None else grad_w.dtype)
        return (
            grad_h * scale if grad_h is not None else None,
            grad_w * scale if grad_w is not None else None,
            None,
            None,
            None,
        )


def _loss_and_logits_grad(
    logits: torch.Tensor, targets: torch.Tensor, dtype: torch.dtype, scored: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits: [c, vocab] (overwritten), targets: [c] -> (fp32 loss summed over the first `scored` rows, the rest
    being padding, and d loss / d logits [c, vocab] in `dtype`).

    The fused C pass where it runs (see `kernels/cross_entropy_rows`), else torch ops with the same fp32 math.
    """
    row_loss = cross_entropy_rows_(logits, targets)
    if row_loss is not None:
        return row_loss[:scored].sum(), logits.to(dtype)
    logp = torch.log_softmax(logits, dim=-1, dtype=torch.float32)  # [c, vocab] fp32
    picked = logp.gather(1, targets.unsqueeze(1))
    # d(sum of -log p_y)/d logits = softmax - one_hot(y), built in place in the log-softmax buffer.
    dlogits = logp.exp_()
    dlogits.scatter_add_(1, targets.unsqueeze(1), torch.full_like(picked, -1.0))
    return -picked[:scored].sum(), dlogits.to(dtype)


# The projection's row count is rounded up to a multiple of this. The scored-token count changes every batch,
# and every new matmul shape costs a compiled kernel (oneDNN keeps one per shape for bf16 on CPU, and its
# long-lived allocations pin the freed activation blocks around them: +17 MiB resident per step on tiny/pretrain).
ROW_MULTIPLE = 64


def _scored_rows(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """values: [n, ...], keep: [m] row indices -> [m rounded up to ROW_MULTIPLE, ...], the kept rows, then zeros."""
    out = values.new_empty(keep.numel() + (-keep.numel() % ROW_MULTIPLE), *values.shape[1:])
    out[keep.numel() :].zero_()
    torch.index_select(values, 0, keep, out=out[: keep.numel()])
    return out
