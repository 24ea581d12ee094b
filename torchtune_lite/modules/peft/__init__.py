"""Parameter-efficient fine-tuning: LoRA layers, NF4 quantization, adapter helpers, state-dict hooks."""

from torchtune_lite.modules.peft.lora import LoRALinear, adapters_disabled
from torchtune_lite.modules.peft.nf4 import dequantize_nf4, linear_nf4, nf4_block_sizes, quantize_nf4
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
    "adapters_disabled",
    "LoRAStateDictError",
    "dequantize_nf4",
    "get_adapter_params",
    "get_adapter_state_dict",
    "get_merged_lora_ckpt",
    "linear_nf4",
    "merge_lora_weight",
    "nf4_block_sizes",
    "quantize_nf4",
    "register_reparametrize_state_dict_hook",
    "reparametrize_as_dtype_state_dict_post_hook",
    "set_trainable_params",
    "validate_missing_and_unexpected_for_lora",
]
