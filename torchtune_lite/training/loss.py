"""The training forward (`forward_loss`) and its cross-entropy, computed chunk by chunk from the final hidden states.

With a 32000-token vocabulary the fp32 logits of one 4x512 batch take 260 MB, and autograd would keep
them for backward. A plain linear output layer (untied or tied to the embeddings, frozen or trained) goes
through `fused_linear_cross_entropy`: projection, fp32 reduction and gradients in one pass per chunk of
tokens. Any other output module (a LoRA'd or NF4 one, an FSDP-sharded one whose forward gathers its
weight) is called per sequence chunk and recomputed in backward (non-reentrant activation
checkpointing), so at most one chunk's logits exist at a time and none are saved for backward.
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from torchtune_lite.data.collate import CROSS_ENTROPY_IGNORE_IDX as IGNORE_INDEX  # the label the data masks with
from torchtune_lite.training.linear_cross_entropy import ROW_MULTIPLE, fused_linear_cross_entropy


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """labels: [b, s] -> [b, s]. Position i predicts token i+1: drop the first label, pad the end with IGNORE_INDEX."""
    pad = torch.full_like(labels[:, :1], IGNORE_INDEX)
    return torch.cat([labels[:, 1:], pad], dim=1)


def forward_loss(
    model: torch.nn.Module, loss_fn: torch.nn.Module, batch: dict[str, torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training forward: (summed loss, count of scored tokens) of one collated batch (`tokens`/`labels` [b, s], optional `mask`,
    `input_pos`): the model's final hidden states through `loss_fn` with its output layer, labels shifted."""
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    hidden = model(batch["tokens"], mask=batch.get("mask"), input_pos=batch.get("input_pos"), return_hidden=True)
    return loss_fn(hidden, model.output, shift_labels(batch["labels"]))


def _chunk_loss_sum(output: nn.Module, hidden: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """hidden: [b, c, d], labels: [b, c] -> summed fp32 cross-entropy over the non-ignored tokens."""
    # A sequence chunk of [b, s, d] is not contiguous; flattening it first keeps the projection a plain
    # matmul (a strided 3-D input makes F.linear fall back to bmm over a copied, expanded weight).
    logits = output(hidden.reshape(-1, hidden.size(-1))).float()
    return F.cross_entropy(logits, labels.reshape(-1), ignore_index=ignore_index, reduction="sum")


def plain_linear_weight(output: nn.Module) -> Optional[torch.Tensor]:
    """The weight of `output` if calling it is exactly `F.linear(x, weight)` on a dense tensor, else None.

    Subclasses (LoRALinear is not one, but FSDP2 swaps in a subclass), hooks (which may gather or change
    the weight), a bias, and tensor subclasses (NF4Tensor, DTensor) all mean the module must be called.
    """
    if type(output) is not nn.Linear or output.bias is not None:
        return None
    if output._forward_hooks or output._forward_pre_hooks:
        return None
    weight = output.weight
    return weight if type(weight) in (torch.Tensor, nn.Parameter) else None


class ChunkedCrossEntropyLoss(nn.Module):
    """`forward(hidden: [b, s, d], output, labels: [b, s]) -> (loss_sum: [], num_tokens: [])`.

    `output` is the model's vocab projection (an `nn.Linear`, a `LoRALinear`, an NF4 base: anything
    callable on `[b, c, d]`); it is called per chunk, so a LoRA'd output layer keeps its adapter.
    Labels are already shifted (position i holds the target of token i). Returning the fp32 sum and the
    count of non-ignored tokens lets the caller weight every token equally across micro-batches and ranks:
    divide the accumulated gradients by the step's total token count.

    A plain `nn.Linear` output layer takes the fused path (see the module docstring) in chunks of tokens
    whose fp32 logits fit `fused_chunk_mb`. Other output modules take the chunked, recomputed path; there,
    small batches skip the chunking: when the whole batch's fp32 logits fit in `chunk_above_mb`, they are
    computed in one matmul and kept for backward, as a plain cross-entropy would.

    Args:
        num_output_chunks: (other output modules) how many pieces the sequence is split into.
        ignore_index: label value that contributes neither loss nor a token to the count.
        chunk_above_mb: (other output modules) fp32 logits larger than this (MiB) are chunked and
            recomputed; 0 always chunks.
        fused_chunk_mb: (plain linear output) fp32 logits of one chunk of tokens, in MiB.
    """

    def __init__(
        self,
        num_output_chunks: int = 8,
        ignore_index: int = IGNORE_INDEX,
        chunk_above_mb: float = 256.0,
        fused_chunk_mb: float = 64.0,
    ) -> None:
        super().__init__()
        if num_output_chunks < 1:
            raise ValueError(f"num_output_chunks={num_output_chunks} must be at least 1")
        if chunk_above_mb < 0:
            raise ValueError(f"chunk_above_mb={chunk_above_mb} must be >= 0")
        if fused_chunk_mb <= 0:
            raise ValueError(f"fused_chunk_mb={fused_chunk_mb} must be > 0")
        self.num_output_chunks = num_output_chunks
        self.ignore_index = ignore_index
        self.chunk_above_bytes = chunk_above_mb * 2**20
        self.fused_chunk_bytes = fused_chunk_mb * 2**20

    def fused_chunk_tokens(self, vocab: int) -> int:
        """Tokens the fused path projects at once: as many as have fp32 logits within `fused_chunk_mb`, rounded
        down to a multiple of 64 rows (the matmul's tile: on a bf16 AMX CPU [512, 512] x [512, 32000] ran at
        1.1-1.2x the rate of 500 or 524 rows)."""
        tokens = max(1, int(self.fused_chunk_bytes // (vocab * 4)))
        return tokens - tokens % ROW_MULTIPLE if tokens >= ROW_MULTIPLE else tokens

    def forward(self, hidden: torch.Tensor, output: nn.Module, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if hidden.dim() != 3 or labels.shape != hidden.shape[:2]:
            raise ValueError(
                f"hidden {tuple(hidden.shape)} and labels {tuple(labels.shape)} do not match: "
                "expected hidden [batch, seq, dim] and labels [batch, seq]"
            )
        count = (labels != self.ignore_index).sum()
        weight = plain_linear_weight(output)
        if weight is not None:
            chunk_tokens = self.fused_chunk_tokens(weight.size(0))
            return _fused(hidden.reshape(-1, hidden.size(-1)), weight, labels.reshape(-1), self.ignore_index, chunk_tokens), count
        vocab = getattr(output, "out_features", None) or getattr(output, "out_dim", None)
        if vocab is not None and labels.numel() * vocab * 4 <= self.chunk_above_bytes:
            return _chunk_loss_sum(output, hidden, labels, self.ignore_index), count
        # Recompute only when backward will run; under no_grad there is nothing to save anyway.
        recompute = torch.is_grad_enabled()
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for h, y in zip(hidden.chunk(self.num_output_chunks, dim=1), labels.chunk(self.num_output_chunks, dim=1)):
            if recompute:
                total = total + checkpoint(_chunk_loss_sum, output, h, y, self.ignore_index, use_reentrant=False)
            else:
                total = total + _chunk_loss_sum(output, h, y, self.ignore_index)
        return total, count


# The fused pass is already one loop of large kernels; compile_loss traces only the fallback path.
_fused = torch.compiler.disable(fused_linear_cross_entropy)
