"""Parameter-efficient fine-tuning: LoRA layers, adapter helpers, state-dict hooks (NF4 lives in torchtune_lite.quantization)."""

from torchtune_lite.modules.peft.lora import LoRALinear
from torchtune_lite.modules.peft.state_dict_hooks import (
    register_reparametrize_state_dict_hook,
    reparametrize_as_dtype_state_dict_post_hook,
)
from torchtune_lite.modules.peft.utils import (
    LORA_ATTN_MODULES,
    LoRAStateDictError,
    get_adapter_params,
    get_adapter_state_dict,
    get_merged_lora_ckpt,
    merge_lora_weight,
    set_trainable_params,
    validate_missing_and_unexpected_for_lora,
)

__all__ = [
    "LORA_ATTN_MODULES",
    "LoRALinear",
    "LoRAStateDictError",
    "get_adapter_params",
    "get_adapter_state_dict",
    "get_merged_lora_ckpt",
    "merge_lora_weight",
    "register_reparametrize_state_dict_hook",
    "reparametrize_as_dtype_state_dict_post_hook",
    "set_trainable_params",
    "validate_missing_and_unexpected_for_lora",
]
