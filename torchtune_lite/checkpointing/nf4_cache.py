"""A quantized base saved once and reloaded on the next run of the same config (`nf4_cache_dir`).

Quantizing a 7B checkpoint to NF4 costs tens of seconds of CPU on every run. The first run of a config
saves the loaded base to `nf4_cache_dir/nf4-<digest>.safetensors`: each NF4Tensor as its five fields
(`quantized_data`, `quantized_scalers`, `quantization_factor`, `scaler_mean`, `nf4`, stored under
`<key>::<field>`) with its block sizes, shape and dtype in the header metadata, and every other loaded
weight as it is. Later runs copy those fields straight into the built model: no re-quantization, the
same bits. The digest covers the checkpoint files (names, sizes, modification times), the model config
and the dtype, so an edited checkpoint or config gets a new cache file instead of a stale one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

from torchtune_lite._torchao import NF4Tensor
from torchtune_lite.checkpointing._errors import CheckpointFormatError
from torchtune_lite.checkpointing._safetensors_io import SafetensorsReader, TensorToWrite, write_safetensors
from torchtune_lite.progress_bars import track_writes
from torchtune_lite.quantization.nf4_layout import NF4_FIELDS, nf4_fields, nf4_from_fields, nf4_layout

CACHE_FORMAT = "torchtune_lite.nf4_cache.v1"  # bump when the file layout changes: old caches are then ignored
_SEP = "::"  # module paths never contain it


def nf4_cache_path(cache_dir: str | Path, weight_files: Iterable[Path], model_config: Any) -> Path:
    """`cache_dir/nf4-<digest>.safetensors`, the digest over the checkpoint files' names, sizes and
    modification times and `model_config` (anything JSON-serializable: the model component and dtype)."""
    digest = hashlib.sha256(CACHE_FORMAT.encode())
    for path in weight_files:
        stat = Path(path).stat()
        digest.update(json.dumps([Path(path).name, stat.st_size, stat.st_mtime_ns]).encode())
    digest.update(json.dumps(model_config, sort_keys=True, default=str).encode())
    return Path(cache_dir).expanduser() / f"nf4-{digest.hexdigest()[:20]}.safetensors"


def save_nf4_cache(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write `tensors` (NF4Tensors as their fields, others as they are) to `path`, atomically."""
    to_write: list[TensorToWrite] = []
    layouts: dict[str, dict] = {}
    for key, value in tensors.items():
        value = value.detach()
        if isinstance(value, NF4Tensor):
            layouts[key] = nf4_layout(value)
            for field, inner in nf4_fields(value).items():
                to_write.append(TensorToWrite(f"{key}{_SEP}{field}", tuple(inner.shape), inner.dtype, lambda t=inner: t))
        else:
            to_write.append(TensorToWrite(key, tuple(value.shape), value.dtype, lambda t=value: t))
    path.parent.mkdir(parents=True, exist_ok=True)
    with track_writes(to_write, "Writing the NF4 cache") as tracked:
        write_safetensors(path, tracked, metadata={"format": CACHE_FORMAT, "nf4": json.dumps(layouts)})


def iter_nf4_cache(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """`(key, tensor)` pairs from a cache file, NF4Tensors rebuilt from their fields, read one at a time."""
    with SafetensorsReader(path) as f:
        metadata = f.metadata or {}
        if metadata.get("format") != CACHE_FORMAT:
            raise CheckpointFormatError(f"{path} is not an NF4 cache of format {CACHE_FORMAT}: delete it to rebuild it")
        try:
            layouts = json.loads(metadata["nf4"])
            for key in f.keys():
                if _SEP not in key:
                    yield key, f.get_tensor(key)
            for key, layout in layouts.items():
                fields = {field: f.get_tensor(f"{key}{_SEP}{field}") for field in NF4_FIELDS}
                yield key, nf4_from_fields(layout, fields)
        except (KeyError, TypeError, json.JSONDecodeError) as err:
            raise CheckpointFormatError(f"{path} is not a readable NF4 cache ({err!r}): delete it to rebuild it") from err


__all__ = ["CACHE_FORMAT", "iter_nf4_cache", "nf4_cache_path", "save_nf4_cache"]
