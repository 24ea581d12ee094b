"""Runs a test function on N gloo ranks: spawned processes joined in a real process group on CPU."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def run_on_ranks(world_size: int, fn: Callable[..., Any], *args: Any) -> list[Any]:
    """`fn(rank, world_size, *args)` on each of `world_size` processes; returns each rank's result, by rank.

    `fn` must be a module-level function (spawned processes import it). One thread per process: the ranks
    share two cores, and the figures they compare must not depend on the thread count.
    """
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(world_size, tmp, fn, args), nprocs=world_size, join=True)
        return [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=False) for r in range(world_size)]


def _worker(rank: int, world_size: int, tmp: str, fn: Callable[..., Any], args: tuple) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world_size)
    try:
        result = fn(rank, world_size, *args)
        torch.save(result, Path(tmp) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
