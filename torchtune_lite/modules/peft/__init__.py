"""Parameter-efficient fine-tuning: LoRA layers and their rules, adapter helpers, state-dict hooks
(NF4 lives in torchtune_lite.quantization)."""

from torchtune_lite.modules.peft.lora import (
    LoRALinear,
    adapters_disabled,
    adapter_scale,
    complete_adapter_config,
    is_adapter_key,
    lora_scale,
    merge_lora_weight,
    model_adapter_config,
    peft_adapter_config,
    split_adapter_key,
)
from torchtune_lite.modules.peft.state_dict_hooks import (
    register_reparametrize_state_dict_hook,
    reparametrize_as_dtype_state_dict_post_hook,
)
from torchtune_lite.modules.peft.utils import (
    LORA_ATTN_MODULES,
    get_adapter_params,
    get_adapter_state_dict,
    set_trainable_params,
)

__all__ = [
    "LORA_ATTN_MODULES",
    "LoRALinear",
    "adapters_disabled",
    "adapter_scale",
    "complete_adapter_config",
    "get_adapter_params",
    "get_adapter_state_dict",
    "is_adapter_key",
    "lora_scale",
    "merge_lora_weight",
    "model_adapter_config",
    "peft_adapter_config",
    "register_reparametrize_state_dict_hook",
    "reparametrize_as_dtype_state_dict_post_hook",
    "set_trainable_params",
    "split_adapter_key",
]
