"""Builders that assemble Llama-2 models of any size from `torchtune_lite.modules`.

Every builder creates its parameters under the caller's default dtype and device (e.g. inside
`with set_default_dtype(torch.bfloat16), torch.device("cuda"):`). QLoRA builders quantize each LoRA'd
linear as soon as it is created, so peak memory stays near the finished model plus one linear.
"""

import functools
import math
import warnings
from typing import Callable, Optional, Sequence

from torch import nn

from torchtune_lite.modules import (
    FeedForward,
    MultiHeadAttention,
    RMSNorm,
    RotaryPositionalEmbeddings,
    TransformerDecoder,
    TransformerDecoderLayer,
)
from torchtune_lite.modules.peft import LORA_ATTN_MODULES, LoRALinear, register_reparametrize_state_dict_hook


def scale_hidden_dim_for_mlp(dim: int, multiple_of: int = 256) -> int:
    """Llama's feed-forward width: 2/3 of 4*dim, rounded up to a multiple of `multiple_of` (4096 -> 11008)."""
    hidden = int(8 * dim / 3)
    return multiple_of * math.ceil(hidden / multiple_of)


def _check_shapes(embed_dim: int, num_heads: int, num_kv_heads: int) -> int:
    if embed_dim % num_heads != 0:
        raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}: adjust one of them")
    if num_heads % num_kv_heads != 0:
        raise ValueError(f"num_kv_heads={num_kv_heads} does not divide num_heads={num_heads}: pick a divisor")
    return embed_dim // num_heads


LinearFactory = Callable[[str, int, int], nn.Module]


def _plain_linear(name: str, in_dim: int, out_dim: int) -> nn.Module:
    return nn.Linear(in_dim, out_dim, bias=False)


def _build_decoder(
    make_linear: LinearFactory,
    *,
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    max_seq_len: int,
    intermediate_dim: Optional[int],
    attn_dropout: float,
    norm_eps: float,
    rope_base: int,
) -> TransformerDecoder:
    """Assembles the decoder; `make_linear(state_dict_name, in_dim, out_dim)` builds every projection."""
    head_dim = _check_shapes(embed_dim, num_heads, num_kv_heads)
    hidden_dim = intermediate_dim or scale_hidden_dim_for_mlp(embed_dim)
    rope = RotaryPositionalEmbeddings(head_dim, max_seq_len=max_seq_len, base=rope_base)
    layers = nn.ModuleList()
    for i in range(num_layers):
        prefix = f"layers.{i}"
        attn = MultiHeadAttention(
            embed_dim=embed_dim,
            num_heads=num_heads,
            num_kv_heads=num_kv_heads,
            head_dim=head_dim,
            q_proj=make_linear(f"{prefix}.attn.q_proj", embed_dim, num_heads * head_dim),
            k_proj=make_linear(f"{prefix}.attn.k_proj", embed_dim, num_kv_heads * head_dim),
            v_proj=make_linear(f"{prefix}.attn.v_proj", embed_dim, num_kv_heads * head_dim),
            output_proj=make_linear(f"{prefix}.attn.output_proj", num_heads * head_dim, embed_dim),
            pos_embeddings=rope,
            max_seq_len=max_seq_len,
            attn_dropout=attn_dropout,
        )
        mlp = FeedForward(
            gate_proj=make_linear(f"{prefix}.mlp.w1", embed_dim, hidden_dim),
            down_proj=make_linear(f"{prefix}.mlp.w2", hidden_dim, embed_dim),
            up_proj=make_linear(f"{prefix}.mlp.w3", embed_dim, hidden_dim),
        )
        layers.append(
            TransformerDecoderLayer(
                attn=attn, mlp=mlp, sa_norm=RMSNorm(embed_dim, eps=norm_eps), mlp_norm=RMSNorm(embed_dim, eps=norm_eps)
            )
        )
    return TransformerDecoder(
        tok_embeddings=nn.Embedding(vocab_size, embed_dim),
        layers=layers,
        norm=RMSNorm(embed_dim, eps=norm_eps),
        output=make_linear("output", embed_dim, vocab_size),
        max_seq_len=max_seq_len,
        num_heads=num_heads,
        head_dim=head_dim,
    )


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
    return _build_decoder(
        _plain_linear,
        vocab_size=vocab_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        embed_dim=embed_dim,
        max_seq_len=max_seq_len,
        intermediate_dim=intermediate_dim,
        attn_dropout=attn_dropout,
        norm_eps=norm_eps,
        rope_base=rope_base,
    )


def _check_lora_attn_modules(lora_attn_modules: Sequence[str]) -> None:
    if isinstance(lora_attn_modules, str):
        raise ValueError(
            f"lora_attn_modules must be a list, got the string {lora_attn_modules!r}: write [{lora_attn_modules}]"
        )
    bad = [name for name in lora_attn_modules if name not in LORA_ATTN_MODULES]
    if bad:
        raise ValueError(f"lora_attn_modules has unknown entries {bad}: choose from {list(LORA_ATTN_MODULES)}")


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
    _check_lora_attn_modules(lora_attn_modules)
    adapted = set(lora_attn_modules)
    if apply_lora_to_mlp:
        adapted.update(("w1", "w2", "w3"))
    if apply_lora_to_output:
        adapted.add("output")
    not_quantized: list[str] = []

    def make_linear(name: str, in_dim: int, out_dim: int) -> nn.Module:
        if name.split(".")[-1] not in adapted:
            return nn.Linear(in_dim, out_dim, bias=False)
        layer = LoRALinear(
            in_dim,
            out_dim,
            rank=lora_rank,
            alpha=lora_alpha,
            dropout=lora_dropout,
            quantize_base=quantize_base,
            warn_if_not_quantized=False,
        )
        if quantize_base and not layer.quantize_base:
            not_quantized.append(f"{name} [{out_dim}, {in_dim}]")
        return layer

    model = _build_decoder(
        make_linear,
        vocab_size=vocab_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        embed_dim=embed_dim,
        max_seq_len=max_seq_len,
        intermediate_dim=intermediate_dim,
        attn_dropout=attn_dropout,
        norm_eps=norm_eps,
        rope_base=rope_base,
    )
    if not_quantized:
        warnings.warn(
            f"{len(not_quantized)} LoRA'd linears have sizes that fit no NF4 block size and stay in high precision "
            f"(no QLoRA memory saving there): {', '.join(not_quantized)}",
            stacklevel=2,
        )
    if quantize_base:
        register_reparametrize_state_dict_hook(model, dtype=None)
    return model


qlora_llama2 = functools.partial(lora_llama2, quantize_base=True)
qlora_llama2.__doc__ = "`lora_llama2` with `quantize_base=True`: the frozen base of every LoRA'd linear in NF4."
