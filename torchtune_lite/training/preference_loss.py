"""Preference losses: DPO (sigmoid, with conservative label smoothing), IPO, and the reference-free SimPO.

Each loss reads how likely the policy (and, except for SimPO, the reference: the same model with its
adapters switched off) finds the chosen and the rejected completion of each pair. The formulas and the
metric names follow TRL (`DPOTrainer` for DPO and IPO, `CPOTrainer` with `loss_type="simpo"` for SimPO),
so numbers and dashboards carry over from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

PreferenceLossKind = Literal["dpo", "ipo", "simpo"]


@dataclass
class CompletionLogps:
    """Log-probabilities of a batch of completions: `total: [pairs]` summed over each completion's tokens,
    `num_tokens: [pairs]` how many tokens were scored."""

    total: torch.Tensor
    num_tokens: torch.Tensor

    @property
    def per_token(self) -> torch.Tensor:
        return self.total / self.num_tokens.clamp(min=1)


@dataclass
class PreferenceStats:
    """Per-pair values behind TRL's metrics; `metric_sums` adds them up so micro-batches and ranks can be
    summed before dividing by the number of pairs."""

    chosen_rewards: torch.Tensor  # [pairs]
    rejected_rewards: torch.Tensor
    chosen_logps: torch.Tensor  # what TRL logs as logps/*: sums for DPO and IPO, per-token means for SimPO
    rejected_logps: torch.Tensor

    def metric_sums(self) -> dict[str, torch.Tensor]:
        chosen, rejected = self.chosen_rewards.detach(), self.rejected_rewards.detach()
        return {
            "rewards/chosen": chosen.sum(),
            "rewards/rejected": rejected.sum(),
            "rewards/accuracies": (chosen > rejected).float().sum(),
            "rewards/margins": (chosen - rejected).sum(),
            "logps/chosen": self.chosen_logps.detach().sum(),
            "logps/rejected": self.rejected_logps.detach().sum(),
        }


class PreferenceLoss(nn.Module):
    """`forward(chosen, rejected, ref_chosen, ref_rejected) -> (loss_sum: [], stats)` over a batch of pairs.

    The loss is summed over pairs (fp32): the caller divides by the step's number of pairs, across
    micro-batches and ranks, as the SFT loop divides by its token count.

    Args:
        kind: "dpo" (sigmoid of the reward margin), "ipo" (squared distance of the per-token margin from
            1 / (2 beta), TRL's length-normalised form) or "simpo" (no reference; per-token mean log-probs
            with a target margin gamma).
        beta: strength of the pull towards the reference (DPO), IPO's regulariser tau, SimPO's reward scale.
        label_smoothing: DPO and SimPO: the assumed probability that a pair's labels are swapped
            (conservative DPO); 0 is plain DPO.
        gamma: SimPO's target reward margin.
    """

    def __init__(self, kind: PreferenceLossKind = "dpo", beta: float = 0.1, label_smoothing: float = 0.0, gamma: float = 0.5) -> None:
        super().__init__()
        if kind not in ("dpo", "ipo", "simpo"):
            raise ValueError(f"loss kind={kind!r} is not one of 'dpo', 'ipo', 'simpo'")
        if beta <= 0:
            raise ValueError(f"beta={beta} must be > 0")
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(f"label_smoothing={label_smoothing} must be in [0, 0.5)")
        if kind == "ipo" and label_smoothing:
            raise ValueError("label_smoothing applies to kind=dpo or simpo, not ipo: set it to 0")
        self.kind, self.beta, self.label_smoothing, self.gamma = kind, beta, label_smoothing, gamma

    @property
    def needs_reference(self) -> bool:
        return self.kind != "simpo"

    def forward(
        self,
        chosen: CompletionLogps,
        rejected: CompletionLogps,
        ref_chosen: Optional[CompletionLogps] = None,
        ref_rejected: Optional[CompletionLogps] = None,
    ) -> tuple[torch.Tensor, PreferenceStats]:
        if self.kind == "simpo":
            margin = chosen.per_token.float() - rejected.per_token.float() - self.gamma / self.beta
            stats = PreferenceStats(self.beta * chosen.per_token, self.beta * rejected.per_token, chosen.per_token, rejected.per_token)
            return self._smoothed_sigmoid(margin).sum(), stats
        if ref_chosen is None or ref_rejected is None:
            raise ValueError(f"loss kind={self.kind} compares against the reference model: pass its log-probabilities")
        chosen_ratio = chosen.total.float() - ref_chosen.total.float()
        rejected_ratio = rejected.total.float() - ref_rejected.total.float()
        stats = PreferenceStats(self.beta * chosen_ratio, self.beta * rejected_ratio, chosen.total, rejected.total)
        if self.kind == "ipo":
            margin = chosen_ratio / chosen.num_tokens.clamp(min=1) - rejected_ratio / rejected.num_tokens.clamp(min=1)
            return ((margin - 1 / (2 * self.beta)) ** 2).sum(), stats
        return self._smoothed_sigmoid(chosen_ratio - rejected_ratio).sum(), stats

    def _smoothed_sigmoid(self, margin: torch.Tensor) -> torch.Tensor:
        """[pairs] -> [pairs]: -log sigmoid(beta * margin), mixed with the swapped pair's loss by label_smoothing."""
        scaled = self.beta * margin
        return -(1 - self.label_smoothing) * F.logsigmoid(scaled) - self.label_smoothing * F.logsigmoid(-scaled)
