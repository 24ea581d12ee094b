"""Assembles a Llama-style decoder of any family (Llama-2/3.x, Qwen2/2.5, Qwen3, Mistral) from `DecoderArgs`.

The families differ only in a few switches (q/k/v biases, per-head q/k RMSNorm, RoPE base and scaling,
explicit head_dim, tied embeddings), so one assembly serves them all and the family builders stay
one-liners. Every builder creates its parameters under the caller's default dtype and device; QLoRA
builders quantize each LoRA'd linear as soon as it is created, so peak memory stays near the finished
model plus one linear.
"""

import dataclasses
import functools
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from torch import nn

from torchtune_lite.modules import (
    FeedForward,
    Llama3RopeScaling,
    MultiHeadAttention,
    RMSNorm,
    RotaryPositionalEmbeddings,
    TransformerDecoder,
    TransformerDecoderLayer,
)
from torchtune_lite.modules.peft import LORA_ATTN_MODULES, LoRALinear, register_reparametrize_state_dict_hook


@dataclass(frozen=True)
class DecoderArgs:
    """Every size and switch of a decoder. `head_dim` defaults to embed_dim // num_heads.

    tie_word_embeddings: the checkpoint stores one [vocab, dim] matrix for both the embedding and the
        output projection. The model still holds `output` as its own linear (loaded from the embedding),
        so LoRA, NF4 and FSDP treat it like any other linear; the checkpointer writes one copy back.
    """

    vocab_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    embed_dim: int
    intermediate_dim: int
    max_seq_len: int
    head_dim: Optional[int] = None
    attn_dropout: float = 0.0
    norm_eps: float = 1e-5
    rope_base: float = 10_000
    rope_scaling: Optional[Llama3RopeScaling] = None
    qkv_bias: bool = False
    qk_norm: bool = False
    tie_word_embeddings: bool = False

    def resolved_head_dim(self) -> int:
        if self.num_heads % self.num_kv_heads != 0:
            raise ValueError(f"num_kv_heads={self.num_kv_heads} does not divide num_heads={self.num_heads}: pick a divisor")
        if self.head_dim is not None:
            return self.head_dim
        if self.embed_dim % self.num_heads != 0:
            raise ValueError(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}: adjust one of them")
        return self.embed_dim // self.num_heads


# make_linear(state_dict_name, in_dim, out_dim, bias) builds every projection.
LinearFactory = Callable[[str, int, int, bool], nn.Module]


def _plain_linear(name: str, in_dim: int, out_dim: int, bias: bool) -> nn.Module:
    return nn.Linear(in_dim, out_dim, bias=bias)


def build_decoder(args: DecoderArgs, make_linear: LinearFactory = _plain_linear) -> TransformerDecoder:
    """The decoder described by `args`, its linears built by `make_linear` (plain `nn.Linear` by default)."""
    head_dim = args.resolved_head_dim()
    dim, bias = args.embed_dim, args.qkv_bias
    rope = RotaryPositionalEmbeddings(head_dim, max_seq_len=args.max_seq_len, base=args.rope_base, scaling=args.rope_scaling)
    layers = nn.ModuleList()
    for i in range(args.num_layers):
        prefix = f"layers.{i}"
        attn = MultiHeadAttention(
            embed_dim=dim,
            num_heads=args.num_heads,
            num_kv_heads=args.num_kv_heads,
            head_dim=head_dim,
            q_proj=make_linear(f"{prefix}.attn.q_proj", dim, args.num_heads * head_dim, bias),
            k_proj=make_linear(f"{prefix}.attn.k_proj", dim, args.num_kv_heads * head_dim, bias),
            v_proj=make_linear(f"{prefix}.attn.v_proj", dim, args.num_kv_heads * head_dim, bias),
            output_proj=make_linear(f"{prefix}.attn.output_proj", args.num_heads * head_dim, dim, False),
            pos_embeddings=rope,
            max_seq_len=args.max_seq_len,
            attn_dropout=args.attn_dropout,
            q_norm=RMSNorm(head_dim, eps=args.norm_eps) if args.qk_norm else None,
            k_norm=RMSNorm(head_dim, eps=args.norm_eps) if args.qk_norm else None,
        )
        mlp = FeedForward(
            gate_proj=make_linear(f"{prefix}.mlp.w1", dim, args.intermediate_dim, False),
            down_proj=make_linear(f"{prefix}.mlp.w2", args.intermediate_dim, dim, False),
            up_proj=make_linear(f"{prefix}.mlp.w3", dim, args.intermediate_dim, False),
        )
        layers.append(
            TransformerDecoderLayer(
                attn=attn, mlp=mlp, sa_norm=RMSNorm(dim, eps=args.norm_eps), mlp_norm=RMSNorm(dim, eps=args.norm_eps)
            )
        )
    return TransformerDecoder(
        tok_embeddings=nn.Embedding(args.vocab_size, dim),
        layers=layers,
        norm=RMSNorm(dim, eps=args.norm_eps),
        output=make_linear("output", dim, args.vocab_size, False),
        max_seq_len=args.max_seq_len,
        num_heads=args.num_heads,
        head_dim=head_dim,
    )


def check_lora_attn_modules(lora_attn_modules: Sequence[str]) -> None:
    if isinstance(lora_attn_modules, str):
        raise ValueError(
            f"lora_attn_modules must be a list, got the string {lora_attn_modules!r}: write [{lora_attn_modules}]"
        )
    bad = [name for name in lora_attn_modules if name not in LORA_ATTN_MODULES]
    if bad:
        raise ValueError(f"lora_attn_modules has unknown entries {bad}: choose from {list(LORA_ATTN_MODULES)}")


def build_lora_decoder(
    args: DecoderArgs,
    lora_attn_modules: Sequence[str],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    *,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    quantize_base: bool = False,
) -> TransformerDecoder:
    """The decoder with `LoRALinear`s on the chosen linears (NF4 frozen base if `quantize_base`: QLoRA).

    With `quantize_base` the model's `state_dict()` returns plain tensors of the original dtype on CPU,
    and loading a plain state dict re-quantizes. Only LoRA'd linears are quantized.
    """
    check_lora_attn_modules(lora_attn_modules)
    adapted = set(lora_attn_modules)
    if apply_lora_to_mlp:
        adapted.update(("w1", "w2", "w3"))
    if apply_lora_to_output:
        adapted.add("output")
    not_quantized: list[str] = []

    def make_linear(name: str, in_dim: int, out_dim: int, bias: bool) -> nn.Module:
        if name.split(".")[-1] not in adapted:
            return nn.Linear(in_dim, out_dim, bias=bias)
        layer = LoRALinear(
            in_dim,
            out_dim,
            rank=lora_rank,
            alpha=lora_alpha,
            dropout=lora_dropout,
            use_bias=bias,
            quantize_base=quantize_base,
            warn_if_not_quantized=False,
        )
        if quantize_base and not layer.quantize_base:
            not_quantized.append(f"{name} [{out_dim}, {in_dim}]")
        return layer

    model = build_decoder(args, make_linear)
    if not_quantized:
        warnings.warn(
            f"{len(not_quantized)} LoRA'd linears have sizes that fit no NF4 block size and stay in high precision "
            f"(no QLoRA memory saving there): {', '.join(not_quantized)}",
            stacklevel=3,
        )
    if quantize_base:
        register_reparametrize_state_dict_hook(model, dtype=None)
    return model


def sized_builders(
    name: str, args: DecoderArgs, description: str
) -> tuple[Callable[..., TransformerDecoder], Callable[..., TransformerDecoder], Callable[..., TransformerDecoder]]:
    """`(name, lora_name, qlora_name)` builders for one published size, so each family file lists shapes, not code.

    All three take `max_seq_len` (default the model's published context): lower it to bound the RoPE table
    and generation's KV cache (131072 positions of Llama-3.1-8B's cache are 17 GB in bf16).
    """

    def plain(max_seq_len: Optional[int] = None) -> TransformerDecoder:
        return build_decoder(_with_length(args, max_seq_len))

    def lora(
        lora_attn_modules: Sequence[str],
        apply_lora_to_mlp: bool = False,
        apply_lora_to_output: bool = False,
        lora_rank: int = 8,
        lora_alpha: float = 16,
        lora_dropout: float = 0.0,
        quantize_base: bool = False,
        max_seq_len: Optional[int] = None,
    ) -> TransformerDecoder:
        return build_lora_decoder(
            _with_length(args, max_seq_len), lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output,
            lora_rank=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout, quantize_base=quantize_base,
        )

    qlora = functools.partial(lora, quantize_base=True)
    plain.__name__ = plain.__qualname__ = name
    lora.__name__ = lora.__qualname__ = "lora_" + name
    plain.__doc__ = f"{description}."
    lora.__doc__ = f"{description}, with LoRA adapters on the chosen linears (see `build_lora_decoder`)."
    qlora.__doc__ = f"{description}, QLoRA: `lora_{name}` with the LoRA'd linears' frozen base in NF4."
    return plain, lora, qlora


def _with_length(args: DecoderArgs, max_seq_len: Optional[int]) -> DecoderArgs:
    return args if max_seq_len is None else dataclasses.replace(args, max_seq_len=max_seq_len)
