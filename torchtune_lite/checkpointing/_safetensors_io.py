"""Streaming tensor-file I/O: read one tensor at a time, write one shard at a time.

Reading uses `safe_open` (memory-mapped safetensors) or `torch.load(mmap=True, weights_only=True)`
for `.bin`/`.pt`/`.pth` pickles, which refuses any pickle that would run code. Writing takes a list
of tensor *producers* with their shapes and dtypes: the safetensors writer puts the header down first
and then produces, writes and drops one tensor at a time (the next one is produced while the current one
is written), so a high-precision copy (a dequantized NF4 weight, a merged LoRA weight, a permuted q/k)
exists for two tensors at most, never for a whole shard.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

from torchtune_lite.checkpointing._atomic import atomic_write, atomic_write_bytes
from torchtune_lite.checkpointing._errors import CheckpointFormatError, UnsafeCheckpointError

DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3

if sys.byteorder != "little":  # safetensors data is little-endian and is written as the raw CPU bytes
    raise ImportError("torchtune_lite writes safetensors from raw tensor bytes and needs a little-endian CPU")


# torch dtype -> safetensors dtype name, in the safetensors crate's `Dtype` order (increasing alignment):
# its writer lays tensors out by descending position in this order, then by name.
_SAFETENSORS_DTYPES: dict[torch.dtype, str] = {
    torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.float8_e5m2: "F8_E5M2",
    torch.float8_e4m3fn: "F8_E4M3", torch.int16: "I16", torch.uint16: "U16", torch.float16: "F16",
    torch.bfloat16: "BF16", torch.int32: "I32", torch.uint32: "U32", torch.float32: "F32",
    torch.float64: "F64", torch.int64: "I64", torch.uint64: "U64",
}  # fmt: skip
_DTYPE_RANK = {dtype: rank for rank, dtype in enumerate(_SAFETENSORS_DTYPES)}
_TORCH_DTYPES = {name: dtype for dtype, name in _SAFETENSORS_DTYPES.items()}
_MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit


class SafetensorsReader:
    """Reads a safetensors file one tensor at a time with plain reads into fresh tensors.

    Not `safe_open`: its memory map keeps every page read so far resident and counted in the process's
    RSS until the file is closed (a 5 GB shard read end to end adds 5 GB to the peak), while a read
    leaves only the tensors the caller holds. The header is checked as the safetensors library checks it.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = open(self.path, "rb")
        try:
            self.metadata, self._entries = self._read_header()
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> SafetensorsReader:
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def keys(self) -> list[str]:
        """Tensor names in the order their data lies in the file."""
        return list(self._entries)

    def get_tensor(self, key: str) -> torch.Tensor:
        dtype, shape, start, end = self._entries[key]
        value = torch.empty(shape, dtype=dtype)
        if end > start:
            view = memoryview(value.reshape(-1).view(torch.uint8).numpy())
            self._file.seek(self._data_start + start)
            done = 0
            while done < end - start:
                n = self._file.readinto(view[done:])
                if not n:
                    raise self._error(f"{key} ends past the end of the file")
                done += n
        return value

    def _read_header(self) -> tuple[Optional[dict[str, str]], dict[str, tuple]]:
        size = os.fstat(self._file.fileno()).st_size
        raw = self._file.read(8)
        if len(raw) < 8:
            raise self._error("shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", raw)
        if n > _MAX_HEADER_BYTES or 8 + n > size:
            raise self._error(f"header length {n} does not fit the file of {size} bytes")
        self._data_start = 8 + n
        try:
            header = json.loads(self._file.read(n).decode("utf-8"))
            metadata = header.pop("__metadata__", None)
            entries = sorted(
                ((key, _TORCH_DTYPES[info["dtype"]], tuple(info["shape"]), *info["data_offsets"]) for key, info in header.items()),
                key=lambda e: (e[3], e[4]),
            )
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
            raise self._error(f"unreadable header: {err!r}") from err
        offset = 0
        for key, dtype, shape, start, end in entries:
            if start != offset or end - start != math.prod(shape) * dtype.itemsize:
                raise self._error(f"{key} has data_offsets [{start}, {end}] that do not fit its shape and the tensors before it")
            offset = end
        if self._data_start + offset != size:
            raise self._error(f"the data should end at byte {self._data_start + offset} but the file has {size}")
        return metadata, {key: (dtype, shape, start, end) for key, dtype, shape, start, end in entries}

    def _error(self, problem: str) -> CheckpointFormatError:
        return CheckpointFormatError(
            f"{self.path} is not a readable safetensors file ({problem}): it is truncated or corrupt, download or copy it again"
        )


def iter_safetensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield `(key, tensor)` from a safetensors file, reading each tensor only when asked."""
    with SafetensorsReader(path) as f:
        for key in f.keys():
            yield key, f.get_tensor(key)


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
    """One tensor of a file being saved: its name in the file, what `produce()` will return (shape and
    dtype, known up front so a file's header can be written before any tensor exists), and how to make it."""

    key: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    produce: Callable[[], torch.Tensor]  # returns a tensor of exactly `shape` and `dtype`

    def __post_init__(self) -> None:
        self.shape = tuple(int(n) for n in self.shape)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


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
        value = _produce_checked(t).contiguous()
        if value.untyped_storage().data_ptr() in seen:  # each key owns its storage, as in transformers' own files
            value = value.clone()
        seen.add(value.untyped_storage().data_ptr())
        materialized[t.key] = value
    return materialized


def safetensors_header(tensors: list[TensorToWrite], metadata: Optional[dict[str, str]]) -> tuple[bytes, list[TensorToWrite]]:
    """The bytes before the data of a safetensors file holding `tensors`, and the order their data follows.

    Byte for byte what the safetensors library writes: an 8-byte little-endian header length, then
    compact JSON (`__metadata__` first, then each tensor's dtype, shape and data_offsets in data order,
    which is by descending dtype alignment, then by name) padded with spaces to a multiple of 8 bytes.
    """
    unknown = sorted({str(t.dtype) for t in tensors if t.dtype not in _SAFETENSORS_DTYPES})
    if unknown:
        raise ValueError(f"safetensors cannot store dtypes {unknown}: cast those tensors before saving")
    keys = [t.key for t in tensors]
    if len(set(keys)) != len(keys):
        raise ValueError(f"two tensors to save share the name {next(k for k in keys if keys.count(k) > 1)!r}: each key must be unique")
    order = sorted(tensors, key=lambda t: (-_DTYPE_RANK[t.dtype], t.key))
    header: dict[str, Any] = {} if metadata is None else {"__metadata__": dict(sorted(metadata.items()))}
    offset = 0
    for t in order:
        header[t.key] = {"dtype": _SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # so every tensor's data starts 8-byte aligned in a memory map
    return struct.pack("<Q", len(text)) + text, order


def write_safetensors(path: Path, tensors: list[TensorToWrite], metadata: Optional[dict[str, str]] = None) -> None:
    """Write `tensors` as one safetensors file, atomically, holding at most two of them in memory at a time.

    The header comes from the declared shapes and dtypes; then each tensor is produced, its bytes
    appended, and dropped before the next. `metadata` defaults to `{"format": "pt"}`, as torch writers set it.
    """
    header, order = safetensors_header(tensors, {"format": "pt"} if metadata is None else metadata)
    atomic_write(path, lambda tmp: _stream_to_file(tmp, header, order))


def _stream_to_file(path: Path, header: bytes, order: list[TensorToWrite]) -> None:
    with open(path, "wb") as f:
        f.write(header)
        for value in _produced_one_ahead(order):
            if value.numel():
                # a byte view of the CPU tensor: written straight from its storage, no copy
                f.write(value.contiguous().reshape(-1).view(torch.uint8).numpy())
            del value


def _produced_one_ahead(order: list[TensorToWrite]) -> Iterator[torch.Tensor]:
    """The produced tensors in order, each made on a worker thread while the previous one is written.

    Producing (dequantizing, merging, converting) and writing each take about half of a save; both
    release the GIL, so overlapping them nearly halves it, for one extra tensor in memory.
    """
    if not order:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="produce-tensor") as pool:
        pending = pool.submit(_produce_checked, order[0])
        for t in order[1:]:
            value = pending.result()
            pending = pool.submit(_produce_checked, t)
            yield value
            del value
        yield pending.result()


def _produce_checked(t: TensorToWrite) -> torch.Tensor:
    value = t.produce().detach().to("cpu")
    if tuple(value.shape) != t.shape or value.dtype != t.dtype:
        raise ValueError(
            f"{t.key}: produced {value.dtype} {list(value.shape)} but was declared {t.dtype} {list(t.shape)}: "
            "the TensorToWrite must state the shape and dtype its producer returns"
        )
    return value


def write_torch_file(path: Path, tensors: list[TensorToWrite]) -> None:
    """Materialize `tensors` and `torch.save` them as one file, atomically."""
    materialized = materialize(tensors)
    atomic_write(path, lambda tmp: torch.save(materialized, tmp))


def write_sharded(
    out_dir: Path, tensors: list[TensorToWrite], max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, safetensors: bool = True
) -> list[str]:
    """Write HF-style shards plus their index: `model-0000k-of-0000n.safetensors` and
    `model.safetensors.index.json`, or `pytorch_model-0000k-of-0000n.bin` and its index.

    Returns the file names written. Safetensors shards hold one tensor in memory at a time; `.bin`
    shards (pickles, written by `torch.save`) one shard.
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
