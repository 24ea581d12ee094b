"""Mistral-7B v0.3 (GQA, RoPE theta 1e6, vocab 32768, no sliding window): plain, LoRA and QLoRA."""

from torchtune_lite.models._decoder import DecoderArgs, sized_builders

# Shape from Mistral's HF config.json (v0.3: sliding_window null, so attention is plain causal).
mistral_7b, lora_mistral_7b, qlora_mistral_7b = sized_builders(
    "mistral_7b",
    DecoderArgs(vocab_size=32_768, num_layers=32, num_heads=32, num_kv_heads=8, embed_dim=4096, intermediate_dim=14336,
                max_seq_len=32_768, norm_eps=1e-5, rope_base=1_000_000.0),
    "Mistral-7B v0.3: 32 layers, 32 query / 8 key-value heads, dim 4096, feed-forward 14336",
)

__all__ = ["mistral_7b", "lora_mistral_7b", "qlora_mistral_7b"]
