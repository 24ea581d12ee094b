"""Building a model from a checkpoint for generation and evaluation (no optimizer, no training state).

Three ways a fine-tune's output is loaded, all through the config's checkpointer:
- merged weights: `checkpoint_dir` is the run's `epoch_N` folder, the model component a plain `llama2`;
- base + PEFT adapter, plain model: `adapter_checkpoint` is `epoch_N/adapter`; each adapted weight is
  merged (`W + alpha/r * B @ A`) as it streams in, so no LoRA modules are needed;
- base + adapter into a LoRA or QLoRA model component (the base then stays NF4 for QLoRA): the adapter
  fills the `lora_a`/`lora_b` parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig

from torchtune_lite import config
from torchtune_lite.data.saved_template import use_saved_template
from torchtune_lite.training.device import get_device
from torchtune_lite.training.model_from_checkpoint import build_model_from_checkpoint
from torchtune_lite.training.precision import get_dtype


def load_inference_model(cfg: DictConfig, *, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """`cfg.model` built on `device` in `dtype` with `cfg.checkpointer`'s weights (and adapter, if it names
    one) loaded, in eval mode. Raises ValueError naming the file when an adapter does not fit the base."""
    checkpointer = config.instantiate(cfg.checkpointer)
    adapter = checkpointer.load_checkpoint().get("adapter")
    model = build_model_from_checkpoint(cfg.model, checkpointer, device=device, dtype=dtype, adapter=adapter)
    return model.eval()


@dataclass
class Inference:
    model: torch.nn.Module
    tokenizer: Any
    device: torch.device
    instruct_template: bool  # whether prompts are wrapped in the Alpaca template


def load_for_inference(cfg: Any, instruct_template: bool = True) -> Inference:
    """What `tune run generate` and `tune run eval` start from: the config's device and dtype, the model from its
    checkpoint (see `load_inference_model`), and its tokenizer laid out as the fine-tune trained (a fine-tune's
    folder saves its prompt layout: data/saved_template.py); `instruct_template` unless the folder says otherwise."""
    device = get_device(cfg.device)
    model = load_inference_model(cfg, device=device, dtype=get_dtype(cfg.dtype, device))
    tokenizer = config.instantiate(cfg.tokenizer)
    folders = [cfg.checkpointer.get("adapter_checkpoint"), cfg.checkpointer.checkpoint_dir]
    return Inference(model, tokenizer, device, use_saved_template(tokenizer, folders, instruct_template))
