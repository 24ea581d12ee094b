"""Building a model from a checkpoint: the one way training, generation, evaluation, the memory estimate and
the benchmarks get a model.

The steps, in order:
1. build the model component on the meta device in the run's dtype (no random init, and for QLoRA no
   quantization of random weights that the checkpoint overwrites anyway);
2. `prepare` it while it is still on meta (activation checkpointing, per-layer compile);
3. give it storage: empty storage on one device, or `place` it otherwise (FSDP2: each rank holds only its part);
4. stream the checkpoint's weights in one tensor at a time (NF4 targets quantized on the way in), or copy
   the quantized base from the NF4 cache;
5. LoRA adapters: from `adapter` (a resumed run's, or a trained adapter for inference), else fresh ones
   from one generator seeded with `adapter_seed`. A plain model given an adapter gets it merged into the
   base weights as they stream in (`W + alpha/r * B @ A`, alpha and r from the adapter's config).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn

from torchtune_lite import config
from torchtune_lite.checkpointing import ADAPTER_CONFIG_FILE, ADAPTER_DIR
from torchtune_lite.modules.peft import LoRALinear, adapter_scale, complete_adapter_config, is_adapter_key, merge_lora_weight
from torchtune_lite.training.precision import set_default_dtype
from torchtune_lite.training.weight_loading import (
    allocate_empty,
    assert_materialized,
    initialize_adapters,
    load_weights_streaming,
    load_weights_with_nf4_cache,
)


def build_on_meta(component: Any, dtype: torch.dtype, **overrides: Any) -> nn.Module:
    """The model `component` (a config node naming a `_component_`, or a builder taking no arguments) built on
    the meta device with `dtype` as the default dtype: layout only, no storage, no init."""
    with set_default_dtype(dtype), torch.device("meta"):
        return component(**overrides) if callable(component) else config.instantiate(component, **overrides)


def build_model_from_checkpoint(
    component: Any,
    checkpointer: Any,
    *,
    device: torch.device,
    dtype: torch.dtype,
    adapter: Optional[dict[str, torch.Tensor]] = None,
    adapter_seed: int = 0,
    nf4_cache: Optional[Path] = None,
    prepare: Optional[Callable[[nn.Module], None]] = None,
    place: Optional[Callable[[nn.Module], None]] = None,
) -> nn.Module:
    """`component` (see `build_on_meta`) with `checkpointer`'s weights, on `device` in `dtype`.

    adapter: LoRA weights (our keys) for the model's LoRA layers, or merged into a plain model's weights;
        None gives a LoRA model fresh adapters drawn with `adapter_seed` (the same on one device or N ranks).
    nf4_cache: fill the base from this NF4 cache file, or write it after loading (one device only).
    prepare: applied on the meta-built model before it gets storage (activation checkpointing, compile).
    place: gives the meta-built model its storage instead of empty storage on `device` (FSDP2 sharding).
    """
    model = build_on_meta(component, dtype)
    if prepare is not None:
        prepare(model)
    if place is not None:
        place(model)
    else:
        allocate_empty(model, device)
    source = str(checkpointer.checkpoint_dir)
    has_lora = any(isinstance(m, LoRALinear) for m in model.modules())
    may_be_missing = is_adapter_key if has_lora else (lambda key: False)
    tensors = checkpointer.iter_model
    if adapter and not has_lora:
        merge_scale = _adapter_scale(checkpointer.adapter_checkpoint, adapter)
        tensors = lambda: _merge_while_streaming(  # noqa: E731
            checkpointer.iter_model(), adapter, merge_scale, str(checkpointer.adapter_checkpoint)
        )
    if nf4_cache is not None:
        load_weights_with_nf4_cache(model, tensors, nf4_cache, source=source, may_be_missing=may_be_missing)
    else:
        load_weights_streaming(model, tensors(), source=source, may_be_missing=may_be_missing)
    if has_lora and adapter:
        adapter_source = str(checkpointer.adapter_checkpoint or "adapter")
        load_weights_streaming(model, adapter.items(), source=adapter_source, may_be_missing=lambda key: not is_adapter_key(key))
    elif has_lora:
        initialize_adapters(model, adapter_seed)
    assert_materialized(model)
    return model


def _merge_while_streaming(
    tensors: Iterator[tuple[str, torch.Tensor]], adapter: dict[str, torch.Tensor], scale: float, source: str
) -> Iterator[tuple[str, torch.Tensor]]:
    adapter = dict(adapter)
    for key, value in tensors:
        module = key.removesuffix(".weight")
        a, b = adapter.pop(f"{module}.lora_a.weight", None), adapter.pop(f"{module}.lora_b.weight", None)
        if a is not None and b is not None:
            if value.dim() != 2 or a.shape[1] != value.shape[1] or b.shape[0] != value.shape[0]:
                raise ValueError(
                    f"adapter {source}: {module} has lora_a {list(a.shape)} and lora_b {list(b.shape)}, which do not fit the "
                    f"base weight {list(value.shape)}: use the adapter that was trained on this base"
                )
            value = merge_lora_weight(value, a, b, scale)
        yield key, value
    if adapter:
        raise ValueError(
            f"adapter {source} has weights for {sorted(adapter)[:2]}, which the base checkpoint lacks: use the adapter "
            "that was trained on this base"
        )


def _adapter_scale(path: Path, adapter: dict[str, torch.Tensor]) -> float:
    """The merge scale from the adapter's `adapter_config.json` (PEFT's format, as our checkpoints write it)."""
    folder = path if path.is_dir() else path.parent
    candidates = [folder / ADAPTER_CONFIG_FILE, folder / ADAPTER_DIR / ADAPTER_CONFIG_FILE]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise FileNotFoundError(
            f"adapter {path} has no {ADAPTER_CONFIG_FILE} to read lora_alpha from: point adapter_checkpoint at the "
            "adapter folder a run wrote (epoch_N/adapter), or load it into a LoRA model component"
        )
    return adapter_scale(complete_adapter_config(adapter, json.loads(found.read_text())))


__all__ = ["build_model_from_checkpoint", "build_on_meta"]
