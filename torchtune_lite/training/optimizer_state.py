"""Optimizer state in checkpoints: full tensors keyed by parameter name, whatever the placement.

`optimizer.state_dict()` keys states by parameter index and, under FSDP2, holds each rank's shards. Going
through torch.distributed.checkpoint's state-dict helpers instead gives one format for every run: a
checkpoint from a distributed run resumes on one device and the other way round.
"""

from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict, set_optimizer_state_dict


def optimizer_state_for_checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The full optimizer state on CPU (a collective when sharded: every rank calls it; rank 0 gets the state)."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(model, optimizer, options=options)


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Loads a state from `optimizer_state_for_checkpoint` (every rank passes the whole state; each keeps its shard)."""
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
