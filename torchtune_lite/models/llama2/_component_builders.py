"""Builders for Llama-2 models of any size (assembled by `torchtune_lite.models._decoder`).

Every builder creates its parameters under the caller's default dtype and device (e.g. inside
`with set_default_dtype(torch.bfloat16), torch.device("cuda"):`).
"""

import functools
import math
from typing import Optional, Sequence

from torchtune_lite.models._decoder import DecoderArgs, build_decoder, build_lora_decoder
from torchtune_lite.modules import TransformerDecoder


def scale_hidden_dim_for_mlp(dim: int, multiple_of: int = 256) -> int:
    """Llama's feed-forward width: 2/3 of 4*dim, rounded up to a multiple of `multiple_of` (4096 -> 11008)."""
    hidden = int(8 * dim / 3)
    return multiple_of * math.ceil(hidden / multiple_of)


def llama2(
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    max_seq_len: int,
    intermediate_dim: Optional[int] = None,
    attn_dropout: float = 0.0,
    norm_eps: float = 1e-5,
    rope_base: int = 10_000,
) -> TransformerDecoder:
    """A Llama-2 decoder; `intermediate_dim` defaults to `scale_hidden_dim_for_mlp(embed_dim)`.

    num_kv_heads < num_heads gives grouped-query attention (Llama-2-70B uses 8 kv heads for 64 heads).
    """
    return build_decoder(_llama2_args(vocab_size, num_layers, num_heads, num_kv_heads, embed_dim, max_seq_len,
                                      intermediate_dim, attn_dropout, norm_eps, rope_base))


def _llama2_args(vocab_size, num_layers, num_heads, num_kv_heads, embed_dim, max_seq_len, intermediate_dim,
                 attn_dropout, norm_eps, rope_base) -> DecoderArgs:
    return DecoderArgs(
        vocab_size=vocab_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        embed_dim=embed_dim,
        intermediate_dim=intermediate_dim or scale_hidden_dim_for_mlp(embed_dim),
        max_seq_len=max_seq_len,
        attn_dropout=attn_dropout,
        norm_eps=norm_eps,
        rope_base=rope_base,
    )


def lora_llama2(
    lora_attn_modules: Sequence[str],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    *,
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    max_seq_len: int,
    intermediate_dim: Optional[int] = None,
    attn_dropout: float = 0.0,
    norm_eps: float = 1e-5,
    rope_base: int = 10_000,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """A Llama-2 decoder whose chosen linears are `LoRALinear`s (NF4 base if `quantize_base`: QLoRA).

    Args:
        lora_attn_modules: attention projections to adapt, from {"q_proj", "k_proj", "v_proj", "output_proj"}.
        apply_lora_to_mlp: also adapt the feed-forward w1, w2, w3.
        apply_lora_to_output: also adapt the final vocab projection.
        lora_rank, lora_alpha, lora_dropout: the adapters' rank, scaling numerator and input dropout.
        quantize_base: store the frozen base of every LoRA'd linear in NF4; the model's `state_dict()` then
            returns plain tensors of the original dtype on CPU, and loading a plain state dict re-quantizes.
        Other arguments as in `llama2`.
    """
    args = _llama2_args(vocab_size, num_layers, num_heads, num_kv_heads, embed_dim, max_seq_len,
                        intermediate_dim, attn_dropout, norm_eps, rope_base)
    return build_lora_decoder(args, lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank=lora_rank,
                              lora_alpha=lora_alpha, lora_dropout=lora_dropout, quantize_base=quantize_base)


qlora_llama2 = functools.partial(lora_llama2, quantize_base=True)
qlora_llama2.__doc__ = "`lora_llama2` with `quantize_base=True`: the frozen base of every LoRA'd linear in NF4."
