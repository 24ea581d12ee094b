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
import inspect
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from torchtune_lite._torchao import NF4Tensor
from torchtune_lite.training.checkpointing._errors import CheckpointFormatError
from torchtune_lite.training.checkpointing._safetensors_io import SafetensorsReader, TensorToWrite, write_safetensors
from torchtune_lite.training.progress_bars import track_writes
from torchtune_lite.training.weight_loading import load_weights_streaming

log = logging.getLogger("torchtune_lite")

CACHE_FORMAT = "torchtune_lite.nf4_cache.v1"  # bump when the file layout changes: old caches are then ignored
_NF4_FIELDS = ("quantized_data", "quantized_scalers", "quantization_factor", "scaler_mean", "nf4")
_SEP = "::"  # module paths never contain it
# torchao's metadata record for NF4Tensor, read off the module _torchao already imported.
_SubclassTensorArgs = inspect.getmodule(NF4Tensor).SubclassTensorArgs


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
    nf4_layout: dict[str, dict] = {}
    for key, value in tensors.items():
        value = value.detach()
        if isinstance(value, NF4Tensor):
            nf4_layout[key] = {
                "shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch."),
                "block_size": value.block_size, "scaler_block_size": value.scaler_block_size, "n_blocks": value.n_blocks,
            }  # fmt: skip
            for field in _NF4_FIELDS:
                inner = getattr(value, field)
                to_write.append(TensorToWrite(f"{key}{_SEP}{field}", tuple(inner.shape), inner.dtype, lambda t=inner: t))
        else:
            to_write.append(TensorToWrite(key, tuple(value.shape), value.dtype, lambda t=value: t))
    path.parent.mkdir(parents=True, exist_ok=True)
    with track_writes(to_write, "Writing the NF4 cache") as tracked:
        write_safetensors(path, tracked, metadata={"format": CACHE_FORMAT, "nf4": json.dumps(nf4_layout)})


def iter_nf4_cache(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """`(key, tensor)` pairs from a cache file, NF4Tensors rebuilt from their fields, read one at a time."""
    with SafetensorsReader(path) as f:
        metadata = f.metadata or {}
        if metadata.get("format") != CACHE_FORMAT:
            raise CheckpointFormatError(f"{path} is not an NF4 cache of format {CACHE_FORMAT}: delete it to rebuild it")
        try:
            nf4_layout = json.loads(metadata["nf4"])
            for key in f.keys():
                if _SEP not in key:
                    yield key, f.get_tensor(key)
            for key, layout in nf4_layout.items():
                fields = {field: f.get_tensor(f"{key}{_SEP}{field}") for field in _NF4_FIELDS}
                yield key, nf4_from_fields(layout, fields)
        except (KeyError, TypeError, json.JSONDecodeError) as err:
            raise CheckpointFormatError(f"{path} is not a readable NF4 cache ({err!r}): delete it to rebuild it") from err


def nf4_from_fields(layout: dict, fields: dict[str, torch.Tensor]) -> NF4Tensor:
    """An NF4Tensor from its five inner tensors (on the device it will live on) and its layout (shape,
    dtype name, block sizes, n_blocks)."""
    shape = torch.Size(layout["shape"])
    stride = tuple(torch.empty(shape, device="meta").stride())  # contiguous, as quantized weights are
    device = fields["quantized_data"].device
    meta = _SubclassTensorArgs(shape, stride, 0, getattr(torch, layout["dtype"]), device, False)
    return NF4Tensor(
        meta, layout["block_size"], layout["n_blocks"], layout["scaler_block_size"], fields["quantized_scalers"],
        fields["quantization_factor"], fields["scaler_mean"], fields["quantized_data"], fields["nf4"],
    )  # fmt: skip


def load_weights_with_nf4_cache(
    model: nn.Module,
    checkpoint: Callable[[], Iterator[tuple[str, torch.Tensor]]],
    cache_path: Path,
    *,
    source: str,
    may_be_missing: Callable[[str], bool] = lambda key: False,
) -> bool:
    """Fill `model` from `cache_path` if it exists, else stream `checkpoint()` into it (NF4 weights are
    quantized on the way in) and save what was loaded to `cache_path`. Returns True on a cache hit.

    A cache that cannot be read or does not fit the model is deleted and rebuilt from the checkpoint.
    """
    if cache_path.is_file():
        try:
            load_weights_streaming(model, iter_nf4_cache(cache_path), source=str(cache_path), may_be_missing=may_be_missing,
                                   desc="Loading the NF4 cache")
            log.info("Loaded the quantized base from the NF4 cache %s", cache_path)
            return True
        except (CheckpointFormatError, ValueError) as err:
            log.warning("NF4 cache %s is unusable (%s); rebuilding it from %s", cache_path, err, source)
            cache_path.unlink(missing_ok=True)
    loaded: list[str] = []

    def recorded() -> Iterator[tuple[str, torch.Tensor]]:
        for key, value in checkpoint():
            loaded.append(key)
            yield key, value

    load_weights_streaming(model, recorded(), source=source, may_be_missing=may_be_missing)
    state = {**dict(model.named_parameters(remove_duplicate=False)), **dict(model.named_buffers(remove_duplicate=False))}
    save_nf4_cache(cache_path, {key: state[key] for key in dict.fromkeys(loaded)})
    log.info("Saved the quantized base to the NF4 cache %s", cache_path)
    return False


__all__ = ["iter_nf4_cache", "load_weights_with_nf4_cache", "nf4_cache_path", "nf4_from_fields", "save_nf4_cache"]
