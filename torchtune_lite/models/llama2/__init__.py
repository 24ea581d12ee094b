"""Llama-2: component builders (any size) and model builders (published sizes), plain, LoRA and QLoRA."""

from torchtune_lite.models.llama2._component_builders import (
    llama2,
    lora_llama2,
    qlora_llama2,
    scale_hidden_dim_for_mlp,
)
from torchtune_lite.models.llama2._tokenizer import Llama2Tokenizer, llama2_tokenizer
from torchtune_lite.models.llama2._model_builders import (
    llama2_13b,
    llama2_70b,
    llama2_7b,
    lora_llama2_13b,
    lora_llama2_70b,
    lora_llama2_7b,
    qlora_llama2_13b,
    qlora_llama2_70b,
    qlora_llama2_7b,
)

__all__ = [
    "Llama2Tokenizer",
    "llama2_tokenizer",
    "llama2",
    "llama2_13b",
    "llama2_70b",
    "llama2_7b",
    "lora_llama2",
    "lora_llama2_13b",
    "lora_llama2_70b",
    "lora_llama2_7b",
    "qlora_llama2",
    "qlora_llama2_13b",
    "qlora_llama2_70b",
    "qlora_llama2_7b",
    "scale_hidden_dim_for_mlp",
]
