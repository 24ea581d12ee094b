"""Llama-2 at its published sizes (7B, 13B, 70B), plain and with LoRA / QLoRA adapters."""

import functools
from typing import Sequence

from torchtune_lite.models.llama2._component_builders import llama2, lora_llama2
from torchtune_lite.modules import TransformerDecoder

# Published shapes (Touvron et al. 2023 and the Meta/HF configs); all share vocab 32000 and a 4096 context.
_SHAPES = {
    "7b": dict(num_layers=32, num_heads=32, num_kv_heads=32, embed_dim=4096, intermediate_dim=11008),
    "13b": dict(num_layers=40, num_heads=40, num_kv_heads=40, embed_dim=5120, intermediate_dim=13824),
    "70b": dict(num_layers=80, num_heads=64, num_kv_heads=8, embed_dim=8192, intermediate_dim=28672),
}
_COMMON = dict(vocab_size=32_000, max_seq_len=4096, attn_dropout=0.0, norm_eps=1e-5)


def llama2_7b() -> TransformerDecoder:
    """Llama-2-7B: 32 layers, 32 heads, dim 4096, feed-forward 11008."""
    return llama2(**_COMMON, **_SHAPES["7b"])


def llama2_13b() -> TransformerDecoder:
    """Llama-2-13B: 40 layers, 40 heads, dim 5120, feed-forward 13824."""
    return llama2(**_COMMON, **_SHAPES["13b"])


def llama2_70b() -> TransformerDecoder:
    """Llama-2-70B: 80 layers, 64 query / 8 key-value heads (GQA), dim 8192, feed-forward 28672."""
    return llama2(**_COMMON, **_SHAPES["70b"])


def _lora(
    size: str,
    lora_attn_modules: Sequence[str],
    apply_lora_to_mlp: bool,
    apply_lora_to_output: bool,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float,
    quantize_base: bool,
) -> TransformerDecoder:
    return lora_llama2(
        lora_attn_modules,
        apply_lora_to_mlp,
        apply_lora_to_output,
        **_COMMON,
        **_SHAPES[size],
        lora_rank=lora_rank,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        quantize_base=quantize_base,
    )


def lora_llama2_7b(
    lora_attn_modules: Sequence[str],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Llama-2-7B with LoRA adapters on the chosen linears (see `lora_llama2`)."""
    return _lora("7b", lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output,
                 lora_rank, lora_alpha, lora_dropout, quantize_base)


def lora_llama2_13b(
    lora_attn_modules: Sequence[str],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Llama-2-13B with LoRA adapters on the chosen linears (see `lora_llama2`)."""
    return _lora("13b", lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output,
                 lora_rank, lora_alpha, lora_dropout, quantize_base)


def lora_llama2_70b(
    lora_attn_modules: Sequence[str],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """Llama-2-70B with LoRA adapters on the chosen linears (see `lora_llama2`)."""
    return _lora("70b", lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output,
                 lora_rank, lora_alpha, lora_dropout, quantize_base)


qlora_llama2_7b = functools.partial(lora_llama2_7b, quantize_base=True)
qlora_llama2_7b.__doc__ = "Llama-2-7B QLoRA: `lora_llama2_7b` with the LoRA'd linears' frozen base in NF4."
qlora_llama2_13b = functools.partial(lora_llama2_13b, quantize_base=True)
qlora_llama2_13b.__doc__ = "Llama-2-13B QLoRA: `lora_llama2_13b` with the LoRA'd linears' frozen base in NF4."
qlora_llama2_70b = functools.partial(lora_llama2_70b, quantize_base=True)
qlora_llama2_70b.__doc__ = "Llama-2-70B QLoRA: `lora_llama2_70b` with the LoRA'd linears' frozen base in NF4."
