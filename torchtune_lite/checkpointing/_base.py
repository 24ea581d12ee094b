"""What the HF and Meta checkpointers share: adapter and recipe-state I/O, and the save story.

A save builds `output_dir/epoch_N` (or `step_N`) in a hidden staging folder: model weights, then the
adapter, then copied config/tokenizer files, then the recipe state, which names the files it belongs
to; only then is the folder renamed into place. A crash or a full disk leaves earlier checkpoints as
they were and no half-written `epoch_N`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch

from torchtune_lite._torchao import NF4Tensor
from torchtune_lite.checkpointing._atomic import atomic_copy, atomic_write_bytes, staged_dir
from torchtune_lite.checkpointing._convert_weights import (
    HF_MODULE_NAMES,
    ModelShape,
    hf_to_interleaved,
    lora_key_from_hf,
    rotary_heads,
)
from torchtune_lite.checkpointing._errors import CheckpointFormatError, CheckpointNotFoundError
from torchtune_lite.checkpointing._recipe_state import RECIPE_STATE_FILE, load_recipe_state, save_recipe_state
from torchtune_lite.checkpointing._safetensors_io import TensorToWrite, iter_safetensors, load_torch_file
from torchtune_lite.data.saved_template import write_template_config
from torchtune_lite.modules.peft.lora import (
    adapter_scale,
    complete_adapter_config,
    is_adapter_key,
    merge_lora_weight,
    peft_adapter_config,
)
from torchtune_lite.progress_bars import track_writes
from torchtune_lite.quantization import dequantize_nf4

ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG_FILE = "adapter_config.json"
# The adapter lives in its own subfolder: transformers auto-applies an adapter_config.json it finds next
# to the full weights, which would add the LoRA delta twice on top of the merged model.
ADAPTER_DIR = "adapter"
# Informational: conversion is driven by config.json (HF) or params.json (Meta), the same for every family.
SUPPORTED_MODEL_TYPES = ("LLAMA2", "LLAMA3", "LLAMA3_2", "MISTRAL", "QWEN2", "QWEN3", "GEMMA2", "GEMMA3")


def to_cpu_plain(value: torch.Tensor) -> torch.Tensor:
    """A plain CPU tensor for writing: NF4 dequantized to its original dtype, autograd detached."""
    value = value.detach()
    return (dequantize_nf4(value) if isinstance(value, NF4Tensor) else value).to("cpu")


class CheckpointerBase:
    """Shared constructor checks, adapter/recipe-state loading, and the staged save."""

    format_name = ""

    def __init__(
        self,
        checkpoint_dir: Union[str, Path],
        checkpoint_files: Any,
        model_type: str,
        output_dir: Union[str, Path],
        adapter_checkpoint: Optional[Union[str, Path]] = None,
        recipe_checkpoint: Optional[Union[str, Path]] = None,
    ) -> None:
        self.checkpoint_dir = Path(checkpoint_dir).expanduser()
        if not self.checkpoint_dir.is_dir():
            raise CheckpointNotFoundError(
                f"checkpoint_dir {self.checkpoint_dir} does not exist: set checkpointer.checkpoint_dir to a folder "
                "with Llama-2 weights, e.g. from `tune download meta-llama/Llama-2-7b-hf --output-dir <dir>`"
            )
        if str(model_type).upper() not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"model_type={model_type!r} is not supported: use one of {list(SUPPORTED_MODEL_TYPES)}")
        self.model_type = str(model_type).upper()
        self.output_dir = Path(output_dir).expanduser()
        self.adapter_checkpoint = self._resolve(adapter_checkpoint) if adapter_checkpoint else None
        self.recipe_checkpoint = self._resolve(recipe_checkpoint) if recipe_checkpoint else None
        self.checkpoint_files = checkpoint_files
        self.shape: Optional[ModelShape] = None  # set by subclasses from config.json / params.json

    def _resolve(self, path: Union[str, Path]) -> Path:
        """Paths may be absolute or relative to checkpoint_dir."""
        path = Path(path).expanduser()
        if not path.is_absolute() and not path.exists() and (self.checkpoint_dir / path).exists():
            path = self.checkpoint_dir / path
        return path

    # ------------------------------------------------------------------ loading
    def load_checkpoint(self) -> dict[str, Any]:
        """`{"adapter": LoRA weights (if adapter_checkpoint), "recipe_state": ... (if recipe_checkpoint)}`.

        The model weights are not in it: callers stream them with `iter_model()` into the built model
        (`training/model_from_checkpoint.py`), which checks every key and shape against that model."""
        checkpoint: dict[str, Any] = {}
        if self.adapter_checkpoint is not None:
            checkpoint["adapter"] = self.load_adapter(self.adapter_checkpoint)
        if self.recipe_checkpoint is not None:
            state = load_recipe_state(self.recipe_checkpoint)
            self._check_recipe_state_files(state)
            checkpoint["recipe_state"] = state
        return checkpoint

    def iter_model(self) -> Iterator[tuple[str, torch.Tensor]]:
        raise NotImplementedError

    def weight_files(self) -> list[Path]:
        """The files `iter_model` reads (for cache keys)."""
        raise NotImplementedError

    def load_adapter(self, path: Path) -> dict[str, torch.Tensor]:
        """Our-key LoRA weights from a PEFT adapter (folder or file) or an our-key adapter file."""
        file = path
        if path.is_dir():
            names = (ADAPTER_WEIGHTS_FILE, "adapter_model.bin", "adapter_model.pt")
            candidates = [folder / n for folder in (path, path / ADAPTER_DIR) for n in names]
            found = [c for c in candidates if c.is_file()]
            if not found:
                raise CheckpointNotFoundError(
                    f"adapter_checkpoint {path} holds no {ADAPTER_WEIGHTS_FILE} (found: {sorted(p.name for p in path.iterdir())}): "
                    "point it at a folder written by save_checkpoint or peft's save_pretrained"
                )
            file = found[0]
        elif not path.is_file():
            raise CheckpointNotFoundError(f"adapter_checkpoint {path} not found: point it at an adapter folder or file saved earlier")
        items = iter_safetensors(file) if file.suffix == ".safetensors" else load_torch_file(file).items()
        adapter: dict[str, torch.Tensor] = {}
        for key, value in items:
            if key.startswith("base_model.model."):  # PEFT layout: HF names and HF q/k row order
                key = lora_key_from_hf(key, str(file))
                heads = rotary_heads(key, self._require_shape(file))
                if heads is not None:
                    value = hf_to_interleaved(value, heads)
            elif not is_adapter_key(key):
                raise CheckpointFormatError(f"{file}: key {key!r} is not a LoRA weight: give adapter_checkpoint a LoRA adapter")
            adapter[key] = value
        return adapter

    def _require_shape(self, source: Path) -> ModelShape:
        if self.shape is None:
            raise CheckpointFormatError(f"{source} needs the model's head counts but {self.checkpoint_dir} has no config: add config.json/params.json")
        return self.shape

    def _check_recipe_state_files(self, state: dict) -> None:
        """A recipe state names the files saved with it; all must still be there."""
        folder = self.recipe_checkpoint.parent
        missing = [n for n in state.get("checkpoint_files", []) if not (folder / n).exists()]
        if missing:
            raise CheckpointFormatError(
                f"{self.recipe_checkpoint} belongs to files that are gone from {folder}: {missing}; resume from another checkpoint"
            )

    # ------------------------------------------------------------------ saving
    def save_checkpoint(
        self,
        state_dict: dict[str, Any],
        epoch: int,
        *,
        step: Optional[int] = None,
    ) -> Path:
        """Write `output_dir/epoch_{epoch}` (or `step_{step}` when `step` is given) and return it.

        Layout: the full-model files at the top (loadable by the matching framework), the LoRA adapter
        in `adapter/`, then `recipe_state.pt` naming every file of the checkpoint.

        `state_dict` keys (all optional): "model" (our keys; values may be NF4Tensors; LoRA keys in it
        are merged into their base weights for the full-model files and also saved as the adapter),
        "adapter" (our-key LoRA weights), "adapter_config" (at least `lora_alpha`; `r`,
        `target_modules` in our names, `lora_dropout` are filled in when absent) and "recipe_state"
        (any weights_only-loadable dict), which is written last.
        """
        model = dict(state_dict.get("model") or {})
        adapter = dict(state_dict.get("adapter") or {})
        lora_in_model = {k: model.pop(k) for k in [k for k in model if is_adapter_key(k)]}
        adapter = adapter or lora_in_model
        adapter_config = complete_adapter_config(adapter, state_dict.get("adapter_config")) if adapter else None
        target = self.output_dir / (f"step_{step}" if step is not None else f"epoch_{epoch}")
        files: list[str] = []
        with staged_dir(target) as stage:
            if model:
                scale = adapter_scale(adapter_config) if lora_in_model else 0.0
                tensors = [self._model_tensor(k, v, lora_in_model, scale) for k, v in model.items()]
                with track_writes([t for t in tensors if t is not None], f"Saving {target.name}") as tracked:
                    files += self.write_model(stage, tracked)
            if adapter:
                (stage / ADAPTER_DIR).mkdir()
                files += [f"{ADAPTER_DIR}/{n}" for n in self.write_adapter(stage / ADAPTER_DIR, adapter, adapter_config)]
            files += self.copy_support_files(stage)
            if state_dict.get("tokenizer_config"):  # the prompt layout the run trained with (data/saved_template.py)
                for sub in ["."] + ([ADAPTER_DIR] if adapter else []):
                    written = str(Path(sub) / write_template_config(stage / sub, state_dict["tokenizer_config"]))
                    files += [written] if written not in files else []
            if "recipe_state" in state_dict and state_dict["recipe_state"] is not None:
                save_recipe_state(stage / RECIPE_STATE_FILE, {**state_dict["recipe_state"], "checkpoint_files": files})
        return target

    def _model_tensor(self, key: str, value: torch.Tensor, lora: dict, scale: float) -> Optional[TensorToWrite]:
        module = key[: -len(".weight")] if key.endswith(".weight") else None
        a, b = (lora.get(f"{module}.lora_a.weight"), lora.get(f"{module}.lora_b.weight")) if module else (None, None)

        def produce() -> torch.Tensor:
            if a is not None and b is not None:  # W + (alpha / r) * B @ A, where the weight lives, then to CPU
                return merge_lora_weight(value, a, b, scale).to("cpu")
            return to_cpu_plain(value)

        # An NF4Tensor reports its original shape and dtype, which is what the producer returns.
        return self.model_tensor_to_write(key, tuple(value.shape), value.dtype, produce)

    def write_adapter_config(self, stage: Path, config: dict) -> str:
        """PEFT's `adapter_config.json` for our adapter config, based on this checkpoint."""
        peft_config = peft_adapter_config(config, HF_MODULE_NAMES, str(self.checkpoint_dir.resolve()))
        atomic_write_bytes(stage / ADAPTER_CONFIG_FILE, json.dumps(peft_config, indent=2).encode())
        return ADAPTER_CONFIG_FILE

    # subclass hooks
    def model_tensor_to_write(self, key: str, shape: tuple[int, ...], dtype: torch.dtype, produce) -> Optional[TensorToWrite]:
        """How our-key tensor `key` (`produce()` returns it, of `shape` and `dtype`) goes into the file; None to skip it."""
        raise NotImplementedError

    def write_model(self, stage: Path, tensors: list[TensorToWrite]) -> list[str]:
        raise NotImplementedError

    def write_adapter(self, stage: Path, adapter: dict, config: dict) -> list[str]:
        raise NotImplementedError

    support_files: tuple[str, ...] = ()

    def copy_support_files(self, stage: Path) -> list[str]:
        copied = []
        for name in self.support_files:
            src = self.checkpoint_dir / name
            if src.is_file():
                atomic_copy(src, stage / name)
                copied.append(name)
        return copied


__all__ = ["CheckpointerBase", "to_cpu_plain", "ADAPTER_DIR", "ADAPTER_WEIGHTS_FILE", "ADAPTER_CONFIG_FILE"]
