"""Learning-rate schedules. They are `LambdaLR`s, so their state saves and resumes like the optimizer's."""

import math
from typing import Optional

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def _check_steps(num_warmup_steps: int, num_training_steps: Optional[int]) -> None:
    if num_warmup_steps < 0:
        raise ValueError(f"lr_scheduler.num_warmup_steps={num_warmup_steps} must be >= 0")
    if num_training_steps is not None and num_training_steps < 0:
        raise ValueError(f"lr_scheduler.num_training_steps={num_training_steps} must be >= 0")


def get_cosine_schedule_with_warmup(
    optimizer: Optimizer,
    num_warmup_steps: int,
    num_training_steps: int,
    num_cycles: float = 0.5,
    last_epoch: int = -1,
) -> LambdaLR:
    """Linear warmup from 0 to the optimizer's lr over `num_warmup_steps`, then a cosine over the remaining
    steps: `num_cycles=0.5` (the default) is one half-wave down to 0 at `num_training_steps`.
    Same signature and values as torchtune's and transformers' function of this name."""
    _check_steps(num_warmup_steps, num_training_steps)

    def factor(step: int) -> float:
        if step < num_warmup_steps:
            return step / max(1, num_warmup_steps)
        progress = (step - num_warmup_steps) / max(1, num_training_steps - num_warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * num_cycles * 2.0 * progress)))

    return LambdaLR(optimizer, factor, last_epoch)


def get_constant_schedule_with_warmup(
    optimizer: Optimizer, num_warmup_steps: int, num_training_steps: Optional[int] = None, last_epoch: int = -1
) -> LambdaLR:
    """Linear warmup from 0 over `num_warmup_steps`, then the optimizer's lr. `num_training_steps` is accepted
    (and unused) so recipes can pass it to any schedule."""
    _check_steps(num_warmup_steps, num_training_steps)
    return LambdaLR(optimizer, lambda step: min(1.0, step / max(1, num_warmup_steps)), last_epoch)
