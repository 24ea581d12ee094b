"""Qwen2.5 at its published sizes (0.5B to 14B; q/k/v biases; tied embeddings up to 3B): plain, LoRA and QLoRA."""

from torchtune_lite.models._decoder import DecoderArgs, sized_builders

# Shapes from Qwen's HF config.json files (RoPE theta 1e6, RMSNorm eps 1e-6, 32k context).
_COMMON = dict(max_seq_len=32_768, norm_eps=1e-6, rope_base=1_000_000.0, qkv_bias=True)
_SMALL = dict(_COMMON, vocab_size=151_936, tie_word_embeddings=True)
_LARGE = dict(_COMMON, vocab_size=152_064)

qwen2_5_0_5b, lora_qwen2_5_0_5b, qlora_qwen2_5_0_5b = sized_builders(
    "qwen2_5_0_5b", DecoderArgs(**_SMALL, num_layers=24, num_heads=14, num_kv_heads=2, embed_dim=896, intermediate_dim=4864),
    "Qwen2.5-0.5B: 24 layers, 14 query / 2 key-value heads, dim 896, feed-forward 4864, tied embeddings",
)
qwen2_5_1_5b, lora_qwen2_5_1_5b, qlora_qwen2_5_1_5b = sized_builders(
    "qwen2_5_1_5b", DecoderArgs(**_SMALL, num_layers=28, num_heads=12, num_kv_heads=2, embed_dim=1536, intermediate_dim=8960),
    "Qwen2.5-1.5B: 28 layers, 12 query / 2 key-value heads, dim 1536, feed-forward 8960, tied embeddings",
)
qwen2_5_3b, lora_qwen2_5_3b, qlora_qwen2_5_3b = sized_builders(
    "qwen2_5_3b", DecoderArgs(**_SMALL, num_layers=36, num_heads=16, num_kv_heads=2, embed_dim=2048, intermediate_dim=11008),
    "Qwen2.5-3B: 36 layers, 16 query / 2 key-value heads, dim 2048, feed-forward 11008, tied embeddings",
)
qwen2_5_7b, lora_qwen2_5_7b, qlora_qwen2_5_7b = sized_builders(
    "qwen2_5_7b", DecoderArgs(**_LARGE, num_layers=28, num_heads=28, num_kv_heads=4, embed_dim=3584, intermediate_dim=18944),
    "Qwen2.5-7B: 28 layers, 28 query / 4 key-value heads, dim 3584, feed-forward 18944",
)
qwen2_5_14b, lora_qwen2_5_14b, qlora_qwen2_5_14b = sized_builders(
    "qwen2_5_14b", DecoderArgs(**_LARGE, num_layers=48, num_heads=40, num_kv_heads=8, embed_dim=5120, intermediate_dim=13824),
    "Qwen2.5-14B: 48 layers, 40 query / 8 key-value heads, dim 5120, feed-forward 13824",
)

__all__ = [f"{p}qwen2_5_{s}" for s in ("0_5b", "1_5b", "3b", "7b", "14b") for p in ("", "lora_", "qlora_")]
