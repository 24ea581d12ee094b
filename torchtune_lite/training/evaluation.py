"""Loss and perplexity of a model on a data set, with the training loop's label shifting and chunked loss."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch

from torchtune_lite.training.loss import ChunkedCrossEntropyLoss, forward_loss


@dataclass
class EvalResult:
    loss: float  # mean cross-entropy per trained-on token (nats)
    num_tokens: int
    num_batches: int

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss) if self.loss < 700 else float("inf")


@torch.no_grad()  # not inference_mode: FSDP2 reuses its all-gather buffers in the training steps that follow
def evaluate_loss(
    model: torch.nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    *,
    device: torch.device,
    loss_fn: Optional[torch.nn.Module] = None,
    max_batches: Optional[int] = None,
    forward: Optional[Callable[[torch.nn.Module, dict, torch.device], tuple[torch.Tensor, torch.Tensor]]] = None,
) -> EvalResult:
    """Token-weighted mean loss over `batches` (collated `tokens`/`labels` [b, s], optional `mask`, `input_pos`),
    every token weighing the same as in training. The model is left in the mode it was in.

    `forward(model, batch, device) -> (summed loss, count)` replaces the token loss for other objectives
    (preference tuning: the mean is then per pair)."""
    loss_fn = loss_fn or ChunkedCrossEntropyLoss()
    forward = forward or (lambda model, batch, device: forward_loss(model, loss_fn, batch, device))
    was_training = model.training
    model.eval()
    loss_sum, tokens, count = 0.0, 0, 0
    try:
        for batch in batches:
            if max_batches is not None and count >= max_batches:
                break
            batch_loss, batch_tokens = forward(model, batch, device)
            loss_sum += float(batch_loss)
            tokens += int(batch_tokens)
            count += 1
    finally:
        model.train(was_training)
    if tokens == 0:
        raise ValueError("the evaluation data has no tokens to score (every label is masked): check the data set and train_on_input")
    return EvalResult(loss_sum / tokens, tokens, count)
