"""Cross-entropy computed chunk by chunk from the final hidden states.

With a 32000-token vocabulary the fp32 logits of one 4x512 batch take 260 MB, and autograd would keep
them for backward. Here each sequence chunk is projected, upcast and reduced on its own, and recomputed
in backward (activation checkpointing), so at most one chunk's logits exist at a time.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def _chunk_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    logits = F.linear(hidden, weight).float()
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=ignore_index, reduction="sum")


class ChunkedCrossEntropyLoss(nn.Module):
    """`forward(hidden: [b, s, d], output: nn.Linear-like, labels: [b, s]) -> (loss_sum, num_tokens)`.

    Labels are already shifted (position i holds the target for token i). Returning the sum and the
    count lets the caller weight every token equally across micro-batches and ranks.
    """

    def __init__(self, num_output_chunks: int = 8, ignore_index: int = -100) -> None:
        super().__init__()
        self.num_output_chunks = num_output_chunks
        self.ignore_index = ignore_index

    def forward(self, hidden: torch.Tensor, output: nn.Module, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weight = output.weight
        if not isinstance(weight, torch.Tensor) or type(weight) not in (torch.Tensor, nn.Parameter):
            # A quantized or LoRA'd output layer: fall back to calling it (its logits are not chunk-recomputed).
            return self._forward_module(hidden, output, labels)
        total = hidden.new_zeros((), dtype=torch.float32)
        for h, y in zip(hidden.chunk(self.num_output_chunks, dim=1), labels.chunk(self.num_output_chunks, dim=1)):
            if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
                total = total + checkpoint(_chunk_loss, h, weight, y, self.ignore_index, use_reentrant=False)
            else:
                total = total + _chunk_loss(h, weight, y, self.ignore_index)
        return total, (labels != self.ignore_index).sum()

    def _forward_module(self, hidden, output, labels):
        total = hidden.new_zeros((), dtype=torch.float32)
        for h, y in zip(hidden.chunk(self.num_output_chunks, dim=1), labels.chunk(self.num_output_chunks, dim=1)):
            logits = output(h).float()
            total = total + F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=self.ignore_index, reduction="sum")
        return total, (labels != self.ignore_index).sum()
