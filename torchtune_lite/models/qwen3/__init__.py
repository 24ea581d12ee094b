"""Qwen3 dense models (0.6B to 8B; per-head q/k RMSNorm, head_dim 128, no biases): plain, LoRA and QLoRA."""

from torchtune_lite.models._decoder import DecoderArgs, sized_builders

# Shapes from Qwen's HF config.json files (RoPE theta 1e6, RMSNorm eps 1e-6, 40960 positions).
_COMMON = dict(vocab_size=151_936, max_seq_len=40_960, norm_eps=1e-6, rope_base=1_000_000.0, head_dim=128,
               qk_norm=True, num_kv_heads=8)

qwen3_0_6b, lora_qwen3_0_6b, qlora_qwen3_0_6b = sized_builders(
    "qwen3_0_6b", DecoderArgs(**_COMMON, num_layers=28, num_heads=16, embed_dim=1024, intermediate_dim=3072, tie_word_embeddings=True),
    "Qwen3-0.6B: 28 layers, 16 query / 8 key-value heads of 128, dim 1024, feed-forward 3072, tied embeddings",
)
qwen3_1_7b, lora_qwen3_1_7b, qlora_qwen3_1_7b = sized_builders(
    "qwen3_1_7b", DecoderArgs(**_COMMON, num_layers=28, num_heads=16, embed_dim=2048, intermediate_dim=6144, tie_word_embeddings=True),
    "Qwen3-1.7B: 28 layers, 16 query / 8 key-value heads of 128, dim 2048, feed-forward 6144, tied embeddings",
)
qwen3_4b, lora_qwen3_4b, qlora_qwen3_4b = sized_builders(
    "qwen3_4b", DecoderArgs(**_COMMON, num_layers=36, num_heads=32, embed_dim=2560, intermediate_dim=9728, tie_word_embeddings=True),
    "Qwen3-4B: 36 layers, 32 query / 8 key-value heads of 128, dim 2560, feed-forward 9728, tied embeddings",
)
qwen3_8b, lora_qwen3_8b, qlora_qwen3_8b = sized_builders(
    "qwen3_8b", DecoderArgs(**_COMMON, num_layers=36, num_heads=32, embed_dim=4096, intermediate_dim=12288),
    "Qwen3-8B: 36 layers, 32 query / 8 key-value heads of 128, dim 4096, feed-forward 12288",
)

__all__ = [f"{p}qwen3_{s}" for s in ("0_6b", "1_7b", "4b", "8b") for p in ("", "lora_", "qlora_")]
