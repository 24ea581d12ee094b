"""One preference-tuning forward: the policy's and the reference's log-probabilities of a batch of pairs,
and the preference loss between them.

The reference is the policy's own weights, never a second model: the base with the adapters switched off,
or, when the run starts from an existing (SFT) adapter, the base with that starting adapter swapped in
for the forward. Either way it costs one extra forward without gradients, and no memory beyond a copy
of the adapter (a few MB).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from torch import nn

from torchtune_lite.modules.peft import adapters_disabled, get_adapter_params
from torchtune_lite.training.completion_logps import completion_logps
from torchtune_lite.training.loss import ChunkedCrossEntropyLoss
from torchtune_lite.training.preference_loss import CompletionLogps, PreferenceLoss, PreferenceStats


class ReferencePolicy:
    """Switches `model` to the reference for a `with reference.active():` block.

    Args:
        model: the policy (a model with LoRA adapters), its adapters as the run starts.
        from_start_adapter: the reference keeps the adapter the model holds now (a run that starts from an
            SFT adapter); False: the reference is the base with adapters off (a fresh adapter).
    """

    def __init__(self, model: nn.Module, from_start_adapter: bool = False) -> None:
        self.model = model
        # Copies of the parameters as they are (sharded ones stay sharded): training updates them in place.
        self.start_adapter = (
            {name: param.detach().clone() for name, param in get_adapter_params(model).items()} if from_start_adapter else None
        )

    @contextmanager
    def active(self) -> Iterator[None]:
        if self.start_adapter is None:
            with adapters_disabled(self.model):
                yield
            return
        params = dict(self.model.named_parameters())
        current = {name: params[name].detach().clone() for name in self.start_adapter}
        with torch.no_grad():
            for name, value in self.start_adapter.items():
                params[name].copy_(value)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in current.items():
                    params[name].copy_(value)


def _split(logps: CompletionLogps) -> tuple[CompletionLogps, CompletionLogps]:
    """Rows are [chosen..., rejected...] (see `collate_preference`)."""
    n = logps.total.size(0) // 2
    return CompletionLogps(logps.total[:n], logps.num_tokens[:n]), CompletionLogps(logps.total[n:], logps.num_tokens[n:])


def preference_forward(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    loss_fn: ChunkedCrossEntropyLoss,
    preference: PreferenceLoss,
    reference: ReferencePolicy,
    device: torch.device,
) -> tuple[torch.Tensor, PreferenceStats]:
    """(loss summed over the batch's pairs, per-pair stats) of one collated preference batch
    (`tokens`, `labels`: [2 * pairs, s], chosen rows first)."""
    tokens = batch["tokens"].to(device, non_blocking=True)
    labels = batch["labels"].to(device, non_blocking=True)
    reference_logps = (None, None)
    if preference.needs_reference:
        with torch.no_grad(), reference.active():
            reference_logps = _split(completion_logps(model, tokens, labels, loss_fn))
    policy = _split(completion_logps(model, tokens, labels, loss_fn))
    return preference(*policy, *reference_logps)
