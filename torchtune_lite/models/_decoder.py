"""Assembles a decoder of any family (Llama-2/3.x, Qwen2/2.5, Qwen3, Mistral, Gemma-2/3) from `DecoderArgs`.

The families differ only in a few switches (q/k/v biases, per-head q/k RMSNorm, RoPE base and scaling,
explicit head_dim, tied embeddings; Gemma's GeGLU, (1 + w) norms, sandwich norms, scaled embeddings,
soft-capping, sliding-window layers and local RoPE base), so one assembly serves them all and the family
builders stay one-liners. Every Gemma switch is off by default. Every builder creates its parameters under the caller's default dtype and device; QLoRA
builders quantize each LoRA'd linear as soon as it is created, so peak memory stays near the finished
model plus one linear.
"""

import dataclasses
import functools
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch.nn.functional as F
from torch import nn

from torchtune_lite.modules import (
    FeedForward,
    MultiHeadAttention,
    RMSNorm,
    RotaryPositionalEmbeddings,
    TransformerDecoder,
    TransformerDecoderLayer,
)
from torchtune_lite.modules.feed_forward import gelu_tanh
from torchtune_lite.modules.position_embeddings import RopeScaling
from torchtune_lite.modules.peft import LORA_ATTN_MODULES, LoRALinear, register_reparametrize_state_dict_hook


@dataclass(frozen=True)
class DecoderArgs:
    """Every size and switch of a decoder. `head_dim` defaults to embed_dim // num_heads.

    tie_word_embeddings: the checkpoint stores one [vocab, dim] matrix for both the embedding and the
        output projection. A plain `output` linear then shares the embedding's Parameter (held once, trained
        as one, as in transformers); a LoRA'd `output` keeps its own frozen base (loaded from the embedding,
        possibly NF4), so LoRA and NF4 treat it like any other linear. The checkpointer writes one copy back.

    Gemma switches (all off by default, so the other families build exactly as before):
        hidden_activation: "silu" (SwiGLU) or "gelu_tanh" (GeGLU).
        norm_unit_offset: every RMSNorm scales by (1 + weight), its weight starting at zero.
        sandwich_norms: a second norm on the output of attention and of the MLP, before the residual add.
        scale_embeddings: embeddings multiplied by sqrt(embed_dim).
        query_pre_attn_scalar: attention scores scaled by its inverse square root instead of head_dim's.
        attn_softcap, final_logit_softcap: `cap * tanh(x / cap)` on attention scores / output logits.
        layer_types: per layer "sliding_attention" (sees `sliding_window` keys back) or "full_attention";
            empty means every layer is full.
        rope_local_base: RoPE base of the sliding layers (Gemma-3: 10k, unscaled); None shares the global one.
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
    rope_scaling: Optional[RopeScaling] = None
    qkv_bias: bool = False
    qk_norm: bool = False
    tie_word_embeddings: bool = False
    hidden_activation: str = "silu"
    norm_unit_offset: bool = False
    sandwich_norms: bool = False
    scale_embeddings: bool = False
    query_pre_attn_scalar: Optional[float] = None
    attn_softcap: Optional[float] = None
    final_logit_softcap: Optional[float] = None
    sliding_window: Optional[int] = None
    layer_types: tuple[str, ...] = ()
    rope_local_base: Optional[float] = None

    def resolved_head_dim(self) -> int:
        if self.num_heads % self.num_kv_heads != 0:
            raise ValueError(f"num_kv_heads={self.num_kv_heads} does not divide num_heads={self.num_heads}: pick a divisor")
        if self.head_dim is not None:
            return self.head_dim
        if self.embed_dim % self.num_heads != 0:
            raise ValueError(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}: adjust one of them")
        return self.embed_dim // self.num_heads

    def is_sliding(self, layer: int) -> bool:
        return bool(self.layer_types) and self.layer_types[layer] == "sliding_attention"

    def check_layer_types(self) -> None:
        if self.layer_types and len(self.layer_types) != self.num_layers:
            raise ValueError(f"layer_types has {len(self.layer_types)} entries for {self.num_layers} layers: give one per layer")
        unknown = sorted(set(self.layer_types) - set(LAYER_TYPES))
        if unknown:
            raise ValueError(f"layer_types {unknown} are not supported: use {list(LAYER_TYPES)}")
        if "sliding_attention" in self.layer_types and not self.sliding_window:
            raise ValueError("layer_types has sliding_attention layers but sliding_window is not set: set it")


LAYER_TYPES = ("full_attention", "sliding_attention")
# What every Gemma-2/3 model has, whatever its size.
GEMMA_SWITCHES = dict(hidden_activation="gelu_tanh", norm_unit_offset=True, sandwich_norms=True, scale_embeddings=True,
                      tie_word_embeddings=True)
ACTIVATIONS = {"silu": F.silu, "gelu_tanh": gelu_tanh}


def alternating_layer_types(num_layers: int, every: int) -> tuple[str, ...]:
    """Every `every`-th layer full, the others sliding (Gemma-2: every=2, Gemma-3: every=6), as HF numbers them."""
    return tuple("full_attention" if (i + 1) % every == 0 else "sliding_attention" for i in range(num_layers))


# make_linear(state_dict_name, in_dim, out_dim, bias) builds every projection.
LinearFactory = Callable[[str, int, int, bool], nn.Module]


def _plain_linear(name: str, in_dim: int, out_dim: int, bias: bool) -> nn.Module:
    return nn.Linear(in_dim, out_dim, bias=bias)


def build_decoder(args: DecoderArgs, make_linear: LinearFactory = _plain_linear) -> TransformerDecoder:
    """The decoder described by `args`, its linears built by `make_linear` (plain `nn.Linear` by default)."""
    head_dim = args.resolved_head_dim()
    args.check_layer_types()
    dim, bias = args.embed_dim, args.qkv_bias
    rope = RotaryPositionalEmbeddings(head_dim, max_seq_len=args.max_seq_len, base=args.rope_base, scaling=args.rope_scaling)
    local_rope = rope
    if args.rope_local_base is not None:
        local_rope = RotaryPositionalEmbeddings(head_dim, max_seq_len=args.max_seq_len, base=args.rope_local_base)
    scale = None if args.query_pre_attn_scalar is None else args.query_pre_attn_scalar**-0.5

    def norm(size: int) -> RMSNorm:
        return RMSNorm(size, eps=args.norm_eps, unit_offset=args.norm_unit_offset)

    layers = nn.ModuleList()
    for i in range(args.num_layers):
        prefix = f"layers.{i}"
        sliding = args.is_sliding(i)
        attn = MultiHeadAttention(
            embed_dim=dim,
            num_heads=args.num_heads,
            num_kv_heads=args.num_kv_heads,
            head_dim=head_dim,
            q_proj=make_linear(f"{prefix}.attn.q_proj", dim, args.num_heads * head_dim, bias),
            k_proj=make_linear(f"{prefix}.attn.k_proj", dim, args.num_kv_heads * head_dim, bias),
            v_proj=make_linear(f"{prefix}.attn.v_proj", dim, args.num_kv_heads * head_dim, bias),
            output_proj=make_linear(f"{prefix}.attn.output_proj", args.num_heads * head_dim, dim, False),
            pos_embeddings=local_rope if sliding else rope,
            max_seq_len=args.max_seq_len,
            attn_dropout=args.attn_dropout,
            q_norm=norm(head_dim) if args.qk_norm else None,
            k_norm=norm(head_dim) if args.qk_norm else None,
            sliding_window=args.sliding_window if sliding else None,
            scale=scale,
            softcap=args.attn_softcap,
        )
        mlp = FeedForward(
            gate_proj=make_linear(f"{prefix}.mlp.w1", dim, args.intermediate_dim, False),
            down_proj=make_linear(f"{prefix}.mlp.w2", args.intermediate_dim, dim, False),
            up_proj=make_linear(f"{prefix}.mlp.w3", dim, args.intermediate_dim, False),
            activation=_activation(args.hidden_activation),
        )
        layers.append(
            TransformerDecoderLayer(
                attn=attn,
                mlp=mlp,
                sa_norm=norm(dim),
                mlp_norm=norm(dim),
                sa_post_norm=norm(dim) if args.sandwich_norms else None,
                mlp_post_norm=norm(dim) if args.sandwich_norms else None,
            )
        )
    tok_embeddings = nn.Embedding(args.vocab_size, dim)
    output = make_linear("output", dim, args.vocab_size, False)
    if args.tie_word_embeddings and type(output) is nn.Linear:
        output.weight = tok_embeddings.weight
    return TransformerDecoder(
        tok_embeddings=tok_embeddings,
        layers=layers,
        norm=norm(dim),
        output=output,
        max_seq_len=args.max_seq_len,
        num_heads=args.num_heads,
        head_dim=head_dim,
        embed_scale=dim**0.5 if args.scale_embeddings else None,
        final_logit_softcap=args.final_logit_softcap,
    )


def _activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"hidden_activation {name!r} is not supported: use one of {list(ACTIVATIONS)}")
    return ACTIVATIONS[name]


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
