"""Gemma-3 text models (1B, 4B): Gemma-2's layout without soft-capping, plus RMSNorm on q and k per head,
five sliding-window layers per global one, and two RoPE bases (10k on sliding layers; 1M on global ones,
linearly scaled by 8 on the 4B). Plain, LoRA and QLoRA. Any other size: `from_pretrained_config`.

The 4B builder is the language model of `google/gemma-3-4b-it`; that folder is multimodal
(`Gemma3ForConditionalGeneration`), so its weights must first be saved as a text-only `Gemma3ForCausalLM`."""

from torchtune_lite.models._decoder import GEMMA_SWITCHES, DecoderArgs, alternating_layer_types, sized_builders
from torchtune_lite.modules.position_embeddings import LinearRopeScaling

# Shapes from Google's HF config.json files (head_dim 256, query_pre_attn_scalar 256).
_COMMON = dict(GEMMA_SWITCHES, head_dim=256, norm_eps=1e-6, rope_base=1_000_000.0, rope_local_base=10_000.0,
               query_pre_attn_scalar=256.0, qk_norm=True)

gemma3_1b, lora_gemma3_1b, qlora_gemma3_1b = sized_builders(
    "gemma3_1b",
    DecoderArgs(**_COMMON, vocab_size=262_144, max_seq_len=32_768, num_layers=26, num_heads=4, num_kv_heads=1,
                embed_dim=1152, intermediate_dim=6912, sliding_window=512, layer_types=alternating_layer_types(26, every=6)),
    "Gemma-3-1B: 26 layers (5 sliding-window of 512 per global), 4 query / 1 key-value heads of 256, dim 1152, "
    "feed-forward 6912, tied embeddings",
)
gemma3_4b, lora_gemma3_4b, qlora_gemma3_4b = sized_builders(
    "gemma3_4b",
    DecoderArgs(**_COMMON, vocab_size=262_208, max_seq_len=131_072, num_layers=34, num_heads=8, num_kv_heads=4,
                embed_dim=2560, intermediate_dim=10240, sliding_window=1024, layer_types=alternating_layer_types(34, every=6),
                rope_scaling=LinearRopeScaling(factor=8.0)),
    "Gemma-3-4B (text): 34 layers (5 sliding-window of 1024 per global), 8 query / 4 key-value heads of 256, dim 2560, "
    "feed-forward 10240, tied embeddings, global RoPE scaled linearly by 8",
)

__all__ = [f"{p}gemma3_{s}" for s in ("1b", "4b") for p in ("", "lora_", "qlora_")]
