"""Loading checkpoint weights into a built model one tensor at a time.

`model.load_state_dict(full_dict)` needs every tensor in memory at once: for a 7B QLoRA model that is
13 GB of bf16 on top of the 3.5 GB NF4 model. Streaming the checkpoint instead (each tensor copied, or
quantized by `LoRALinear`'s load hook, then dropped) keeps the peak near the final model plus one tensor.
The same path fills a model sharded with FSDP2: each rank keeps only its own shard of every tensor.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from torchtune_lite._torchao import NF4Tensor
from torchtune_lite.checkpointing import CheckpointFormatError
from torchtune_lite.checkpointing.nf4_cache import iter_nf4_cache, save_nf4_cache
from torchtune_lite.modules.peft import LoRALinear
from torchtune_lite.progress_bars import progress_bar
from torchtune_lite.quantization.nf4_layout import nf4_fields, nf4_from_fields, nf4_layout
from torchtune_lite.training.distributed import materialize_buffers, shard_full_tensor

log = logging.getLogger("torchtune_lite")


def load_weights_streaming(
    model: nn.Module,
    tensors: Iterable[tuple[str, torch.Tensor]],
    *,
    source: str,
    may_be_missing: Callable[[str], bool] = lambda key: False,
    desc: Optional[str] = None,
) -> None:
    """Loads `(key, tensor)` pairs into `model`; errors (one line, naming `source`) on unknown keys, shape
    mismatches and keys the checkpoint lacks unless `may_be_missing(key)` (e.g. fresh LoRA adapters).
    Progress (weights loaded, and quantized for NF4 targets) shows on rank 0 as `desc`."""
    expected = {name: p.shape for name, p in model.named_parameters(remove_duplicate=False)}
    expected.update({name: b.shape for name, b in model.named_buffers() if _is_persistent(model, name)})
    # A tied output projection shares the embedding's Parameter: its checkpoint key is checked, not loaded twice.
    aliases = tied_parameter_names(model)
    loaded: set[str] = set()
    to_load = sum(p.numel() for name, p in [*model.named_parameters(), *model.named_buffers()]
                  if name in expected and not may_be_missing(name))
    quantizing = any(isinstance(p, NF4Tensor) for p in model.parameters())
    bar = progress_bar(to_load, desc=desc or ("Loading and quantizing weights" if quantizing else "Loading weights"),
                       unit="weights", unit_scale=True, enabled=None if to_load else False)
    with bar:
        for key, value in tensors:
            if key in loaded:
                raise CheckpointFormatError(f"checkpoint {source} holds {key!r} twice (in two shards?): list each shard once")
            if key in aliases:
                _check_one(key, value, expected, source)
            else:
                _load_one(model, key, value, expected, source)
            loaded.add(key)
            bar.update(value.numel())
            del value
    for alias, canonical in aliases.items():
        _retie(model, alias, canonical)
    missing = sorted(k for k in expected if k not in loaded and not may_be_missing(k))
    if missing:
        raise CheckpointFormatError(
            f"checkpoint {source} lacks {len(missing)} weight(s) of the model, e.g. {missing[:3]}: "
            "check checkpointer.checkpoint_files lists every shard"
        )


def tied_parameter_names(model: nn.Module) -> dict[str, str]:
    """`{alias: first name}` for parameters reachable under two names (a tied output projection)."""
    first: dict[int, str] = {}
    aliases = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            aliases[name] = first[id(param)]
        else:
            first[id(param)] = name
    return aliases


def _retie(model: nn.Module, alias: str, canonical: str) -> None:
    # Loading into an FSDP2-sharded model replaces the canonical Parameter (see assign_full_tensor); the alias follows.
    module, name = _owner(model, alias)
    owner, owner_name = _owner(model, canonical)
    if module._parameters[name] is not owner._parameters[owner_name]:
        setattr(module, name, owner._parameters[owner_name])


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


def _load_one(model: nn.Module, key: str, value: torch.Tensor, expected: dict, source: str) -> None:
    _check_one(key, value, expected, source)
    assign_full_tensor(model, key, value)


def _check_one(key: str, value: torch.Tensor, expected: dict, source: str) -> None:
    if key not in expected:
        raise CheckpointFormatError(
            f"checkpoint {source} has {key!r}, which the model does not: check that checkpointer points at "
            "weights of the same architecture as the model component"
        )
    if tuple(value.shape) != tuple(expected[key]):
        raise CheckpointFormatError(
            f"checkpoint {source}: {key} has shape {list(value.shape)} but the model expects "
            f"{list(expected[key])}: the model's config does not match these weights"
        )


def assign_full_tensor(model: nn.Module, key: str, value: torch.Tensor) -> None:
    """Sets parameter or buffer `key` from the whole tensor `value`: copied in place (NF4 targets are quantized
    by their load hook), or, for an FSDP2-sharded parameter, replaced by this rank's shard of `value`."""
    # Loaded through the owning module only (its load hooks run, e.g. LoRALinear quantizing into NF4): a
    # root-level load_state_dict would walk every module of the model for each key, seconds at 7B.
    module, name = _owner(model, key)
    current = module._parameters.get(name)
    if isinstance(current, DTensor):
        # FSDP2 picks up the new sharded parameter at its lazy init (before the first forward).
        module.load_state_dict({name: shard_full_tensor(value, current)}, strict=False, assign=True)
    else:
        module.load_state_dict({name: value}, strict=False, assign=False)


def allocate_empty(model: nn.Module, device: torch.device) -> None:
    """Gives a meta-built model uninitialized storage on `device` (NF4 weights included, with their layout) and
    recomputes its RoPE cache: building on meta and then loading skips the random init (and, for QLoRA, the
    quantization of random weights) that the checkpoint overwrites anyway. Every weight must be loaded next.

    Not `Module.to_empty`: torchao's NF4 `empty_like` leaves `scaler_mean` and `nf4` on meta, so a later load
    would silently copy into nothing.
    """
    allocated: dict[int, nn.Parameter] = {}  # by the meta Parameter's id, so tied weights stay one Parameter
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            if param.is_meta:
                if id(param) not in allocated:
                    allocated[id(param)] = nn.Parameter(_empty_like_on(param, device), requires_grad=param.requires_grad)
                setattr(module, name, allocated[id(param)])
    materialize_buffers(model, device)


def _empty_like_on(value: torch.Tensor, device: torch.device) -> torch.Tensor:
    if not isinstance(value, NF4Tensor):
        return torch.empty_like(value, device=device)
    fields = {name: torch.empty_like(inner, device=device) for name, inner in nf4_fields(value).items()}
    return nf4_from_fields(nf4_layout(value), fields)


def assert_materialized(model: nn.Module) -> None:
    """Raises if any parameter or buffer is still on the meta device (nothing loaded or initialized it)."""
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"{len(left)} weight(s) were neither in the checkpoint nor initialized, e.g. {left[:3]}: the checkpoint does not cover the model")


def initialize_adapters(model: nn.Module, seed: int) -> None:
    """Fresh LoRA adapters drawn from one generator seeded with `seed`, module by module, so a run starts from
    the same adapters on one device or sharded over any number of ranks."""
    generator = torch.Generator().manual_seed(seed)
    for prefix, module in model.named_modules():
        if isinstance(module, LoRALinear):
            for name, value in module.initial_adapter_state(generator).items():
                assign_full_tensor(model, f"{prefix}.{name}" if prefix else name, value)


def _owner(model: nn.Module, key: str) -> tuple[nn.Module, str]:
    """The module that holds parameter or buffer `key`, and the name it has there."""
    module_name, _, name = key.rpartition(".")
    return model.get_submodule(module_name), name


def _is_persistent(model: nn.Module, key: str) -> bool:
    module, name = _owner(model, key)
    return name not in module._non_persistent_buffers_set
