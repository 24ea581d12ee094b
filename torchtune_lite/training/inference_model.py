"""Building a model from a checkpoint for generation and evaluation (no optimizer, no training state).

Three ways a fine-tune's output is loaded, all through the config's checkpointer:
- merged weights: `checkpoint_dir` is the run's `epoch_N` folder, the model component a plain `llama2`;
- base + PEFT adapter, plain model: `adapter_checkpoint` is `epoch_N/adapter`; each adapted weight is
  merged (`W + alpha/r * B @ A`) as it streams in, so no LoRA modules are needed;
- base + adapter into a LoRA or QLoRA model component (the base then stays NF4 for QLoRA): the adapter
  fills the `lora_a`/`lora_b` parameters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import torch
from omegaconf import DictConfig

from torchtune_lite import config
from torchtune_lite.modules.peft import LoRALinear, adapter_scale, complete_adapter_config, is_adapter_key, merge_lora_weight
from torchtune_lite.training.checkpointing._base import ADAPTER_CONFIG_FILE, ADAPTER_DIR
from torchtune_lite.training.precision import set_default_dtype
from torchtune_lite.training.weight_loading import (
    allocate_empty,
    assert_materialized,
    initialize_adapters,
    load_weights_streaming,
)


def load_inference_model(cfg: DictConfig, *, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """`cfg.model` built on `device` in `dtype` with `cfg.checkpointer`'s weights (and adapter, if it names
    one) loaded, in eval mode. Raises ValueError naming the file when an adapter does not fit the base."""
    checkpointer = config.instantiate(cfg.checkpointer)
    # As the recipes do: built on meta and given empty storage, so nothing is initialized (or quantized)
    # only to be overwritten by the checkpoint.
    with set_default_dtype(dtype), torch.device("meta"):
        model = config.instantiate(cfg.model)
    allocate_empty(model, device)
    source = str(checkpointer.checkpoint_dir)
    adapter_path = checkpointer.adapter_checkpoint
    adapter = checkpointer.load_checkpoint(include_model=False).get("adapter", {})
    has_lora = any(isinstance(m, LoRALinear) for m in model.modules())
    if has_lora:
        # LoRA layers the adapter does not cover (or all, without one) start as no-ops (lora_b is zero).
        load_weights_streaming(model, checkpointer.iter_model(), source=source, may_be_missing=is_adapter_key)
        initialize_adapters(model, seed=0)
        if adapter:
            load_weights_streaming(model, adapter.items(), source=str(adapter_path), may_be_missing=lambda key: not is_adapter_key(key))
    else:
        tensors = checkpointer.iter_model()
        if adapter:
            tensors = _merge_while_streaming(tensors, adapter, _adapter_scale(adapter_path, adapter), str(adapter_path))
        load_weights_streaming(model, tensors, source=source)
    assert_materialized(model)
    return model.eval()


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
