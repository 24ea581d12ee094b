"""Where a run's processes are: one device, or this rank of a process group sharded with FSDP2.

A recipe holds one `World` and asks it the few things distribution changes: where the meta-built model gets
its storage (`place`), how a checkpoint gets every parameter whole (`gather_parameters`), what the other
ranks do while rank 0 writes (`after_save`), and when the short collective timeout starts (`after_first_step`).
The single-device and distributed recipes then run the same story; only the `World` they start with differs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from torchtune_lite.modules.transformer import TransformerDecoderLayer
from torchtune_lite.progress_bars import write_above_bar
from torchtune_lite.training.distributed import (
    destroy_distributed,
    gather_full_tensor,
    init_distributed,
    long_wait_group,
    materialize_buffers,
    set_collective_timeout,
    shard_model,
)
from torchtune_lite.training.weight_loading import allocate_empty


@dataclass
class World:
    """This process's place in the run. `process_group` is None on one device."""

    device: torch.device
    rank: int = 0
    size: int = 1
    process_group: bool = False
    collective_timeout_seconds: Optional[float] = None
    save_barrier_group: Optional[dist.ProcessGroup] = None

    @classmethod
    def join_process_group(cls, device: torch.device, setup_timeout: float, collective_timeout: float) -> World:
        """Joins the launcher's process group, waiting up to `setup_timeout` seconds per collective until the
        first optimizer step is done (ranks load and compile at different speeds), then `collective_timeout`."""
        rank, size = init_distributed(device, max(setup_timeout, collective_timeout))
        return cls(device, rank, size, process_group=True, collective_timeout_seconds=collective_timeout,
                   save_barrier_group=long_wait_group())

    @property
    def is_rank_zero(self) -> bool:
        return self.rank == 0

    def print(self, message: str, error: bool = False) -> None:
        """On rank 0 only; a message mid-run lands above the training bar."""
        if not self.is_rank_zero:
            return
        if error:
            print(message, file=sys.stderr, flush=True)
        else:
            write_above_bar(message)

    def place(self, model: torch.nn.Module) -> None:
        """Gives the meta-built `model` storage: whole on this device, or this rank's FSDP2 shard of each layer."""
        if self.size == 1:  # nothing to shard (and torchao's NF4 FSDP hooks fail on a world of one)
            allocate_empty(model, self.device)
            return
        shard_model(model, (TransformerDecoderLayer,), self.device)
        materialize_buffers(model, self.device)

    def gather_parameters(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Every parameter whole, by name, as stored (NF4 stays 4-bit: the checkpointer converts one tensor at a
        time while writing). In a process group every rank takes part in each gather and rank 0 keeps them."""
        if not self.process_group:
            return {name: param.detach() for name, param in model.named_parameters()}
        state = {}
        for name, param in model.named_parameters():
            full = gather_full_tensor(param)
            if self.is_rank_zero:
                state[name] = full
        return state

    def after_first_step(self) -> None:
        if self.collective_timeout_seconds is not None:
            set_collective_timeout(self.collective_timeout_seconds)

    def after_save(self) -> None:
        # The other ranks wait here (not in a training collective, whose timeout is short) while rank 0 writes.
        if self.save_barrier_group is not None:
            dist.barrier(group=self.save_barrier_group)

    def all_agree(self, flag: bool) -> bool:
        """True only if `flag` holds on every rank (a collective in a process group)."""
        value = torch.tensor(float(flag), device=self.device)
        if self.size > 1:
            dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value)

    def close(self) -> None:
        if self.process_group:
            destroy_distributed()
