"""Helpers around LoRA adapters: which parameters train, adapter-only state dicts."""

from typing import Any

import torch
from torch import nn

from torchtune_lite.modules.peft.lora import is_adapter_key

LORA_ATTN_MODULES = ("q_proj", "k_proj", "v_proj", "output_proj")


def get_adapter_params(model: nn.Module) -> dict[str, nn.Parameter]:
    """Full names -> parameters of every adapter in `model` (modules with an `adapter_params()` method)."""
    params: dict[str, nn.Parameter] = {}
    for module_name, module in model.named_modules():
        if not callable(getattr(module, "adapter_params", None)):
            continue
        for param_name in module.adapter_params():
            full_name = f"{module_name}.{param_name}" if module_name else param_name
            params[full_name] = module.get_parameter(param_name)
    return params


def set_trainable_params(model: nn.Module, adapter_params: dict[str, Any]) -> None:
    """Makes exactly the parameters named in `adapter_params` trainable and freezes the rest."""
    for name, param in model.named_parameters():
        param.requires_grad_(name in adapter_params)


def get_adapter_state_dict(state_dict: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Only the LoRA entries (`*.lora_a.weight`, `*.lora_b.weight`) of `state_dict`, moved to CPU."""
    return {key: value.cpu() for key, value in state_dict.items() if is_adapter_key(key)}
