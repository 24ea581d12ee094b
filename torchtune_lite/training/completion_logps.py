"""How likely a model finds each completion of a batch: summed log-probabilities of the labelled tokens, per row."""

from __future__ import annotations

import torch
from torch import nn

from torchtune_lite.training.loss import ChunkedCrossEntropyLoss, shift_labels
from torchtune_lite.training.preference_loss import CompletionLogps


def completion_logps(
    model: nn.Module, tokens: torch.Tensor, labels: torch.Tensor, loss_fn: ChunkedCrossEntropyLoss
) -> CompletionLogps:
    """tokens, labels: [rows, seq] (labels IGNORE_INDEX on prompt and padding) -> per-row log-probability sums.

    One forward over all rows; the output projection and cross-entropy then run one row at a time through
    `loss_fn`, so no [rows, seq, vocab] logits are ever held (and the fused path applies where it can).
    """
    hidden = model(tokens, return_hidden=True)
    targets = shift_labels(labels)
    sums, counts = [], []
    for row in range(tokens.size(0)):
        nll, count = loss_fn(hidden[row : row + 1], model.output, targets[row : row + 1])
        sums.append(-nll)
        counts.append(count)
    return CompletionLogps(torch.stack(sums), torch.stack(counts))
