"""Llama-3.2 text models (1B, 3B; tied embeddings): plain, LoRA and QLoRA. Any other size: `from_pretrained_config`."""

import dataclasses

from torchtune_lite.models._decoder import DecoderArgs, sized_builders
from torchtune_lite.models.llama3_1 import LLAMA3_1_ROPE

# Shapes from Meta's HF config.json files: Llama-3.1's recipe with RoPE scaling factor 32 and one
# embedding matrix shared with the output projection.
_COMMON = dict(vocab_size=128_256, max_seq_len=131_072, num_kv_heads=8, norm_eps=1e-5, rope_base=500_000.0,
               rope_scaling=dataclasses.replace(LLAMA3_1_ROPE, factor=32.0), tie_word_embeddings=True)

llama3_2_1b, lora_llama3_2_1b, qlora_llama3_2_1b = sized_builders(
    "llama3_2_1b", DecoderArgs(**_COMMON, num_layers=16, num_heads=32, embed_dim=2048, intermediate_dim=8192),
    "Llama-3.2-1B: 16 layers, 32 query / 8 key-value heads, dim 2048, feed-forward 8192, tied embeddings",
)
llama3_2_3b, lora_llama3_2_3b, qlora_llama3_2_3b = sized_builders(
    "llama3_2_3b", DecoderArgs(**_COMMON, num_layers=28, num_heads=24, embed_dim=3072, intermediate_dim=8192),
    "Llama-3.2-3B: 28 layers, 24 query / 8 key-value heads, dim 3072, feed-forward 8192, tied embeddings",
)

__all__ = ["llama3_2_1b", "lora_llama3_2_1b", "qlora_llama3_2_1b", "llama3_2_3b", "lora_llama3_2_3b", "qlora_llama3_2_3b"]
