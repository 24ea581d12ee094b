"""One preference-tuning forward: the policy's and the reference's log-probabilities of a batch of pairs,
and the preference loss between them, with the reward metrics summed for logging.

The reference is the policy's own weights, never a second model: the base with the adapters switched off,
or, when the run starts from an existing (SFT) adapter, the base with that starting adapter swapped in
for the forward. Either way it costs one extra forward without gradients, and no memory beyond a copy
of the adapter (a few MB).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from omegaconf import DictConfig
from torch import nn

from torchtune_lite.config import import_component
from torchtune_lite.modules.peft import adapters_disabled, get_adapter_params
from torchtune_lite.training.compile import compile_loss
from torchtune_lite.training.completion_logps import completion_logps
from torchtune_lite.training.loss import ChunkedCrossEntropyLoss
from torchtune_lite.training.preference_loss import CompletionLogps, PreferenceLoss


def check_preference_loss(loss: Optional[DictConfig]) -> None:
    """Refuses a `loss` config that is not a preference loss (before anything is built)."""
    target = import_component(loss._component_) if loss else None
    if not (isinstance(target, type) and issubclass(target, PreferenceLoss)):
        raise ValueError(
            f"loss {loss._component_ if loss else None} is not a preference loss: "
            "set loss._component_=torchtune_lite.training.PreferenceLoss (kind: dpo, ipo or simpo)"
        )


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


class PreferenceObjective:
    """What a preference-tuning step minimises, called like the SFT forward: `(model, batch, device) ->
    (loss summed over the batch's pairs, number of pairs)`, so the training loop's accumulation, rank
    reduction and logging serve DPO as they serve SFT. The reward and log-prob metrics of the pairs seen
    since the last `pop_metrics` are summed on the device (no host sync per step).

    Args:
        loss: the preference loss (DPO, IPO or SimPO).
        reference: the reference policy (unused by SimPO).
        token_loss: the chunked cross-entropy that scores each completion's tokens.
    """

    count_unit = "pairs"  # the loop logs pairs_per_second

    def __init__(self, loss: PreferenceLoss, reference: ReferencePolicy, token_loss: Optional[ChunkedCrossEntropyLoss] = None) -> None:
        self.loss, self.reference = loss, reference
        self.token_loss = token_loss or ChunkedCrossEntropyLoss()
        self._sums: dict[str, torch.Tensor] = {}
        self._pairs = 0

    def compile(self) -> None:
        """Compiles both losses in place (for a run that compiles the model)."""
        compile_loss(self.loss)
        compile_loss(self.token_loss)

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """batch: `tokens`, `labels` [2 * pairs, s], chosen rows first (see `collate_preference`)."""
        tokens = batch["tokens"].to(device, non_blocking=True)
        labels = batch["labels"].to(device, non_blocking=True)
        reference_logps = (None, None)
        if self.loss.needs_reference:
            with torch.no_grad(), self.reference.active():
                reference_logps = _split(completion_logps(model, tokens, labels, self.token_loss))
        policy = _split(completion_logps(model, tokens, labels, self.token_loss))
        loss_sum, stats = self.loss(*policy, *reference_logps)
        for name, value in stats.metric_sums().items():
            self._sums[name] = self._sums.get(name, 0) + value
        pairs = tokens.size(0) // 2
        self._pairs += pairs
        return loss_sum, torch.tensor(pairs, device=device)

    def pop_metrics(self, world_size: int = 1) -> dict[str, float]:
        """Means over every pair seen since the last call (over all ranks when `world_size` > 1; every rank
        must call it then), under TRL's names; starts a new window."""
        if not self._sums:
            return {}
        names = sorted(self._sums)
        totals = torch.stack([self._sums[n].float() for n in names] + [torch.tensor(float(self._pairs), device=self._sums[names[0]].device)])
        if world_size > 1:
            torch.distributed.all_reduce(totals)
        self._sums, self._pairs = {}, 0
        values = (totals[:-1] / totals[-1].clamp(min=1)).tolist()
        return dict(zip(names, values))
