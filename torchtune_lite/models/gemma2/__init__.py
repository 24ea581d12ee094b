"""Gemma-2 models (2B, 9B): GeGLU, (1 + w) RMSNorms before and after attention and the MLP, scaled and tied
embeddings, attention and final-logit soft-capping, every other layer a 4096-token sliding window.
Plain, LoRA and QLoRA. Any other size: `from_pretrained_config`."""

from torchtune_lite.models._decoder import GEMMA_SWITCHES, DecoderArgs, alternating_layer_types, sized_builders

# Shapes from Google's HF config.json files (head_dim 256, query_pre_attn_scalar 256, 8192 positions).
_COMMON = dict(GEMMA_SWITCHES, vocab_size=256_000, max_seq_len=8192, head_dim=256, norm_eps=1e-6, rope_base=10_000.0,
               query_pre_attn_scalar=256.0, attn_softcap=50.0, final_logit_softcap=30.0, sliding_window=4096)

gemma2_2b, lora_gemma2_2b, qlora_gemma2_2b = sized_builders(
    "gemma2_2b",
    DecoderArgs(**_COMMON, num_layers=26, num_heads=8, num_kv_heads=4, embed_dim=2304, intermediate_dim=9216,
                layer_types=alternating_layer_types(26, every=2)),
    "Gemma-2-2B: 26 layers (sliding and global alternating), 8 query / 4 key-value heads of 256, dim 2304, "
    "feed-forward 9216, tied embeddings",
)
gemma2_9b, lora_gemma2_9b, qlora_gemma2_9b = sized_builders(
    "gemma2_9b",
    DecoderArgs(**_COMMON, num_layers=42, num_heads=16, num_kv_heads=8, embed_dim=3584, intermediate_dim=14336,
                layer_types=alternating_layer_types(42, every=2)),
    "Gemma-2-9B: 42 layers (sliding and global alternating), 16 query / 8 key-value heads of 256, dim 3584, "
    "feed-forward 14336, tied embeddings",
)

__all__ = [f"{p}gemma2_{s}" for s in ("2b", "9b") for p in ("", "lora_", "qlora_")]
