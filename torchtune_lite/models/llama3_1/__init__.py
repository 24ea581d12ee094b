"""Llama-3.1 at its published sizes (8B, 70B): plain, LoRA and QLoRA. Any other size: `from_pretrained_config`."""

from torchtune_lite.models._decoder import DecoderArgs, sized_builders
from torchtune_lite.modules import Llama3RopeScaling

# Shapes from Meta's HF config.json files: vocab 128256, RoPE theta 500000 with llama3 scaling to 128k.
LLAMA3_1_ROPE = Llama3RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)
_COMMON = dict(vocab_size=128_256, max_seq_len=131_072, num_kv_heads=8, norm_eps=1e-5, rope_base=500_000.0,
               rope_scaling=LLAMA3_1_ROPE)

llama3_1_8b, lora_llama3_1_8b, qlora_llama3_1_8b = sized_builders(
    "llama3_1_8b", DecoderArgs(**_COMMON, num_layers=32, num_heads=32, embed_dim=4096, intermediate_dim=14336),
    "Llama-3.1-8B: 32 layers, 32 query / 8 key-value heads, dim 4096, feed-forward 14336",
)
llama3_1_70b, lora_llama3_1_70b, qlora_llama3_1_70b = sized_builders(
    "llama3_1_70b", DecoderArgs(**_COMMON, num_layers=80, num_heads=64, embed_dim=8192, intermediate_dim=28672),
    "Llama-3.1-70B: 80 layers, 64 query / 8 key-value heads, dim 8192, feed-forward 28672",
)

__all__ = ["llama3_1_8b", "lora_llama3_1_8b", "qlora_llama3_1_8b", "llama3_1_70b", "lora_llama3_1_70b", "qlora_llama3_1_70b"]
