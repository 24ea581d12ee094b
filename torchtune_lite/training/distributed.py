"""torch.distributed mechanics of the distributed recipe: process group, FSDP2 sharding, each rank
materializing only its own shard of a full checkpoint tensor, and full tensors gathered back for saving.

Sharding follows FSDP2: every parameter is a DTensor split along dim 0 across ranks. An NF4 base weight is
quantized whole (its double-quantization statistics span the whole tensor) and then split, so each rank
holds exactly the bits a single-device run would hold for those rows.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

from torchtune_lite._torchao import NF4Tensor
from torchtune_lite.quantization import nf4_fields, nf4_from_fields, nf4_layout, quantize_nf4


def is_distributed_launch() -> bool:
    """True inside a process started by torchrun (or `tune run --nproc_per_node N`)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: torch.device, timeout_seconds: float) -> tuple[int, int]:
    """Joins the job's process group: NCCL for CUDA devices, gloo for CPU. Returns (rank, world_size).

    `timeout_seconds` bounds how long a collective waits for a rank that hangs, so a stuck job fails
    instead of waiting forever (a rank that dies is noticed at once: its sockets close). Give setup a
    longer one (ranks finish loading and the first, compiling step at different times), then shorten it
    with `set_collective_timeout`.
    """
    if not is_distributed_launch():
        raise ValueError(
            "the distributed recipe must be started by a launcher: "
            "tune run --nproc_per_node N lora_finetune_distributed --config ..."
        )
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        if backend == "nccl":
            # On a failed or timed-out collective, abort the communicators and raise in the waiting call (2:
            # CleanUpOnly) instead of killing the process from the watchdog thread (torch's default): the
            # recipe then prints its one-line peer-failure error, as on gloo.
            os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "2")
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_seconds), **kwargs)
    return dist.get_rank(), dist.get_world_size()


def set_collective_timeout(timeout_seconds: float, group: Optional[dist.ProcessGroup] = None) -> None:
    """Changes how long collectives on `group` (default: the job's group) wait for a rank that hangs."""
    # No public API changes a live group's timeout; torchtitan uses this same helper for the same purpose
    # (a long timeout through setup and the first compiled step, a short one for training steps).
    from torch.distributed.distributed_c10d import _set_pg_timeout

    _set_pg_timeout(timedelta(seconds=timeout_seconds), group)


# How a collective reports that another rank hung or died: gloo's messages, and NCCL's (its watchdog's
# timeout, an aborted communicator, or a remote/system error after a peer vanished).
_PEER_FAILURE_SIGNS = (
    "Timed out", "timed out", "Connection closed by peer", "Connection reset by peer",
    "Watchdog caught collective operation timeout", "NCCL communicator was aborted",
    "ncclRemoteError", "ncclSystemError", "NCCL Error", "NCCL error",
)


def peer_failure_message(rank: int, err: BaseException) -> Optional[str]:
    """The one-line error for a collective that failed because another rank hung or died, else None."""
    text = str(err)
    if not any(sign in text for sign in _PEER_FAILURE_SIGNS):
        return None
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return (
        f"error: rank {rank}: another rank stopped answering ({first[-120:]}): it hung or died (see its output); "
        "raise collective_timeout_seconds if a step legitimately takes longer"
    )


def destroy_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def long_wait_group() -> dist.ProcessGroup:
    """A gloo group with a long timeout, for barriers where other ranks wait on rank 0's disk writes
    (saving a 7B checkpoint can take longer than the hang timeout of the training collectives)."""
    return dist.new_group(backend="gloo", timeout=timedelta(hours=2))


def device_mesh(device: torch.device) -> DeviceMesh:
    """A 1-D mesh of all ranks for `device`'s type. Given explicitly to FSDP2, whose default mesh is CUDA
    whenever CUDA is available: `device=cpu` on a GPU host must shard on CPU (under gloo)."""
    return init_device_mesh(torch.device(device).type, (dist.get_world_size(),))


def shard_model(model: nn.Module, layer_types: tuple[type, ...], device: torch.device) -> None:
    """FSDP2 over all ranks on `device`'s type: each matching layer is its own unit (gathered just for its
    forward and backward), then the root (embeddings, final norm, output projection). Works on a
    meta-device model: nothing is allocated."""
    _check_nf4_splits(model, dist.get_world_size())
    mesh = device_mesh(device)
    for module in list(model.modules()):
        if isinstance(module, layer_types):
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)


def _check_nf4_splits(model: nn.Module, world_size: int) -> None:
    # NF4 shards must hold whole scaler blocks (torchao's FSDP hooks gather the 4-bit fields as they are).
    for name, param in model.named_parameters():
        if not isinstance(param, NF4Tensor):
            continue
        fields = (param.quantized_data, param.quantized_scalers, param.quantization_factor)
        if param.shape[0] % world_size or any(f.numel() % world_size for f in fields):
            raise ValueError(
                f"NF4 weight {name} {list(param.shape)} (block sizes {param.block_size}, {param.scaler_block_size}) "
                f"cannot be split evenly over {world_size} ranks: use fewer ranks, or leave that layer out of LoRA"
            )


def materialize_buffers(model: nn.Module, device: torch.device) -> None:
    """Allocates the buffers of a meta-built model on `device` and recomputes them (RoPE's cos/sin cache).

    Checkpoints hold no buffers of ours, so each module that owns one must say how to fill it (`rope_init`).
    """
    for name, module in model.named_modules():
        meta = [key for key, buf in module.named_buffers(recurse=False) if buf is not None and buf.is_meta]
        if not meta:
            continue
        for key in meta:
            setattr(module, key, torch.empty_like(getattr(module, key), device=device))
        if not callable(getattr(module, "rope_init", None)):
            raise RuntimeError(f"{name} ({type(module).__name__}) has buffers {meta} that cannot be recomputed after building on meta")
        module.rope_init()


def shard_full_tensor(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """This rank's part of `full` (a whole tensor every rank can read), laid out like parameter `like`.

    A plain `like` gets `full` itself on `like`'s device; a DTensor `like` gets the DTensor holding only this
    rank's chunk, built locally (each rank reads the checkpoint itself: no scatter). If `like` holds NF4, the
    whole tensor is quantized with `like`'s block sizes first and the 4-bit result is split.
    """
    if not isinstance(like, DTensor):
        return full.to(device=like.device, dtype=like.dtype)
    mesh, placements = like.device_mesh, like.placements
    device = torch.device(mesh.device_type, torch.cuda.current_device()) if mesh.device_type == "cuda" else torch.device("cpu")
    local_like = like.to_local()
    if isinstance(local_like, NF4Tensor):
        nf4 = quantize_nf4(full.to(device=device, dtype=local_like.dtype).contiguous(), local_like.block_size, local_like.scaler_block_size)
        world, rank = mesh.size(), mesh.get_local_rank()
        if full.shape[0] % world:
            raise ValueError(f"an NF4 weight of shape {list(full.shape)} cannot be split evenly over {world} ranks: use a world size dividing {full.shape[0]}")
        local = nf4_shard_with_own_storage(nf4, world, rank)
        return DTensor.from_local(local, mesh, placements, run_check=False, shape=like.shape, stride=like.stride())
    return distribute_tensor(full.to(device=device, dtype=like.dtype), mesh, placements, src_data_rank=None)


def nf4_shard_with_own_storage(nf4: NF4Tensor, world_size: int, rank: int) -> NF4Tensor:
    """Rank `rank`'s dim-0 chunk of `nf4`, every inner tensor copied into its own storage.

    torchao's NF4 `chunk` returns views into the whole weight's fields, and FSDP2 keeps an even shard as
    given (no copy): a rank would then hold the whole 4-bit weight, not 1/world_size of it.
    """
    view = torch.chunk(nf4, world_size, dim=0)[rank]
    fields = {name: inner.clone() for name, inner in nf4_fields(view).items()}
    return nf4_from_fields(nf4_layout(view), fields, requires_grad=view.requires_grad)


def gather_full_tensor(value: torch.Tensor) -> torch.Tensor:
    """The whole tensor behind a (possibly sharded) parameter, on every rank, on CPU.

    A collective: every rank must call it for the same parameters in the same order. NF4 shards are
    gathered as their 4-bit fields (with torchao's own FSDP all-gather hooks), so the result is the
    whole NF4 weight, never a high-precision copy.
    """
    if not isinstance(value, DTensor):
        return value.detach().cpu()
    local = value.to_local().detach()
    if isinstance(local, NF4Tensor):
        mesh = value.device_mesh
        inputs, metadata = local.fsdp_pre_all_gather(mesh)
        gathered = []
        for part in inputs:
            pieces = [torch.empty_like(part) for _ in range(mesh.size())]
            dist.all_gather(pieces, part.contiguous(), group=mesh.get_group())
            gathered.append(torch.cat(pieces))
        full, _ = local.fsdp_post_all_gather(tuple(gathered), metadata, local.dtype)
        return full.cpu() if full.device.type != "cpu" else full
    return value.full_tensor().detach().cpu()


def max_over_ranks(stats: dict[str, float], device: torch.device) -> dict[str, float]:
    """Each figure's maximum over all ranks (e.g. peak memory: the rank that peaks highest sets the limit)."""
    if not stats or not (dist.is_initialized() and dist.get_world_size() > 1):
        return stats
    values = torch.tensor(list(stats.values()), dtype=torch.float64, device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return dict(zip(stats, values.tolist()))


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` from rank `src` on every rank (e.g. the resume directory rank 0 found)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return obj
    box: list[Optional[Any]] = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
