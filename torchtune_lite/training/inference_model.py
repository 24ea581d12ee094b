"""Building a model from a checkpoint for generation and evaluation (no optimizer, no training state).

Three ways a fine-tune's output is loaded, all through the config's checkpointer:
- merged weights: `checkpoint_dir` is the run's `epoch_N` folder, the model component a plain `llama2`;
- base + PEFT adapter, plain model: `adapter_checkpoint` is `epoch_N/adapter`; each adapted weight is
  merged (`W + alpha/r * B @ A`) as it streams in, so no LoRA modules are needed;
- base + adapter into a LoRA or QLoRA model component (the base then stays NF4 for QLoRA): the adapter
  fills the `lora_a`/`lora_b` parameters.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from torchtune_lite import config
from torchtune_lite.training.model_from_checkpoint import build_model_from_checkpoint


def load_inference_model(cfg: DictConfig, *, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """`cfg.model` built on `device` in `dtype` with `cfg.checkpointer`'s weights (and adapter, if it names
    one) loaded, in eval mode. Raises ValueError naming the file when an adapter does not fit the base."""
    checkpointer = config.instantiate(cfg.checkpointer)
    adapter = checkpointer.load_checkpoint(include_model=False).get("adapter")
    model = build_model_from_checkpoint(cfg.model, checkpointer, device=device, dtype=dtype, adapter=adapter)
    return model.eval()
