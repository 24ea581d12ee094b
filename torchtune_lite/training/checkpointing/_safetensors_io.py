"""Streaming tensor-file I/O: read one tensor at a time, write one shard at a time.

Reading uses `safe_open` (memory-mapped safetensors) or `torch.load(mmap=True, weights_only=True)`
for `.bin`/`.pt`/`.pth` pickles, which refuses any pickle that would run code. Writing takes a list
of tensor *producers* so that a high-precision copy (a dequantized NF4 weight, a cast, a permuted
q/k) exists only for the shard being written.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from torchtune_lite.training.checkpointing._atomic import atomic_write, atomic_write_bytes
from torchtune_lite.training.checkpointing._errors import CheckpointFormatError, UnsafeCheckpointError

DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3


def iter_safetensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield `(key, tensor)` from a safetensors file, reading each tensor only when asked."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for key in f.keys():
                yield key, f.get_tensor(key)
    except (SafetensorError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise CheckpointFormatError(
            f"{path} is not a readable safetensors file ({err}): it is truncated or corrupt, download or copy it again"
        ) from err


def load_torch_file(path: Path) -> dict[str, torch.Tensor]:
    """Load a `.bin`/`.pt`/`.pth` state dict memory-mapped, allowing only plain tensors and containers."""
    try:
        try:
            data = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            # legacy (pre-zipfile) torch.save format cannot be memory-mapped; still weights_only
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"{path} holds pickled objects that would run code when loaded (refused, weights_only=True): "
            "use a safetensors checkpoint, or a state dict of plain tensors from a source you trust"
        ) from err
    except (RuntimeError, EOFError) as err:
        raise CheckpointFormatError(f"{path} could not be read as a torch checkpoint ({err}): it is truncated or corrupt, copy it again") from err
    if not isinstance(data, dict):
        raise CheckpointFormatError(f"{path} holds a {type(data).__name__}, not a state dict of tensors: save `model.state_dict()`")
    return data


@dataclass
class TensorToWrite:
    """One tensor of a checkpoint being saved: its name in the file, size, and how to make it."""

    key: str
    nbytes: int
    produce: Callable[[], torch.Tensor]  # returns a CPU tensor in the dtype to store


def plan_shards(tensors: list[TensorToWrite], max_shard_bytes: int) -> list[list[TensorToWrite]]:
    """Greedy split in the given order so no shard passes `max_shard_bytes` (one tensor may)."""
    shards: list[list[TensorToWrite]] = [[]]
    size = 0
    for t in tensors:
        if shards[-1] and size + t.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += t.nbytes
    return shards


def materialize(tensors: list[TensorToWrite]) -> dict[str, torch.Tensor]:
    """Produce the tensors of one file; tied/shared tensors are cloned so each key owns its storage."""
    materialized: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for t in tensors:
        value = t.produce().detach().contiguous()
        if value.untyped_storage().data_ptr() in seen:  # safetensors refuses shared storage (tied weights)
            value = value.clone()
        seen.add(value.untyped_storage().data_ptr())
        materialized[t.key] = value
    return materialized


def write_safetensors(path: Path, tensors: list[TensorToWrite]) -> None:
    """Materialize `tensors` and write them as one safetensors file, atomically."""
    materialized = materialize(tensors)
    atomic_write(path, lambda tmp: save_file(materialized, str(tmp), metadata={"format": "pt"}))


def write_torch_file(path: Path, tensors: list[TensorToWrite]) -> None:
    """Materialize `tensors` and `torch.save` them as one file, atomically."""
    materialized = materialize(tensors)
    atomic_write(path, lambda tmp: torch.save(materialized, tmp))


def write_sharded(
    out_dir: Path, tensors: list[TensorToWrite], max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, safetensors: bool = True
) -> list[str]:
    """Write HF-style shards plus their index: `model-0000k-of-0000n.safetensors` and
    `model.safetensors.index.json`, or `pytorch_model-0000k-of-0000n.bin` and its index.

    Returns the file names written. Only one shard's tensors are in memory at a time.
    """
    prefix, ext = ("model", "safetensors") if safetensors else ("pytorch_model", "bin")
    write = write_safetensors if safetensors else write_torch_file
    shards = plan_shards(tensors, max_shard_bytes)
    weight_map: dict[str, str] = {}
    names = []
    for k, shard in enumerate(shards, start=1):
        name = f"{prefix}-{k:05d}-of-{len(shards):05d}.{ext}"
        write(out_dir / name, shard)
        weight_map.update({t.key: name for t in shard})
        names.append(name)
    index = {"metadata": {"total_size": sum(t.nbytes for t in tensors)}, "weight_map": weight_map}
    index_name = f"{prefix}.{ext}.index.json"
    atomic_write_bytes(out_dir / index_name, json.dumps(index, indent=2).encode())
    return names + [index_name]
