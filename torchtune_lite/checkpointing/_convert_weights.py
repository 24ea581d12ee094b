"""Key names and q/k row orders of Hugging Face (Llama-2/3.x, Mistral, Qwen2/2.5, Qwen3, Gemma-2/3) and Meta checkpoints versus ours.

Our keys follow docs/architecture.md. Hugging Face stores the q/k projection rows of each head
split into two halves (its RoPE rotates `x[:d/2]` against `x[d/2:]`); ours and Meta's interleave
them (pairs `x[2i], x[2i+1]`), so HF q/k weights (and the rows of a LoRA `lora_b` on q/k) are
permuted on the way in and out. Meta's layout only renames keys. Gemma's four norms per layer have
their own HF names (`GEMMA_HF_KEYS`); its (1 + w) norm weights are stored as HF stores them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import torch

from torchtune_lite.modules.peft.lora import split_adapter_key
from torchtune_lite.checkpointing._errors import CheckpointFormatError


@dataclass(frozen=True)
class ModelShape:
    """The sizes that fix every tensor shape; read from HF `config.json` or Meta `params.json`."""

    num_layers: int
    num_heads: int
    num_kv_heads: int
    dim: int
    head_dim: int
    hidden_dim: Optional[int]  # None when the file does not say (Meta); then it is not checked
    vocab_size: Optional[int]
    tie_word_embeddings: bool = False
    qkv_bias: bool = False  # Qwen2/2.5 (or attention_bias=true)
    qk_norm: bool = False  # Qwen3, Gemma-3: RMSNorm over each q/k head
    sandwich_norms: bool = False  # Gemma-2/3: norms after attention and the MLP too

    @property
    def hf_keys(self) -> "_KeyMap":
        """How our keys are named in this family's HF checkpoints."""
        return GEMMA_HF_KEYS if self.sandwich_norms else HF_KEYS

    @classmethod
    def from_hf_config(cls, config: dict) -> "ModelShape":
        heads = config["num_attention_heads"]
        archs = config.get("architectures") or []
        gemma = any(a in archs for a in ("Gemma2ForCausalLM", "Gemma3ForCausalLM"))
        return cls(
            num_layers=config["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=config.get("num_key_value_heads") or heads,
            dim=config["hidden_size"],
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            hidden_dim=config.get("intermediate_size"),
            vocab_size=config.get("vocab_size"),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", gemma)),
            qkv_bias="Qwen2ForCausalLM" in archs or bool(config.get("attention_bias", False)),
            qk_norm="Qwen3ForCausalLM" in archs or "Gemma3ForCausalLM" in archs,
            sandwich_norms=gemma,
        )

    @classmethod
    def from_meta_params(cls, params: dict) -> "ModelShape":
        heads = params["n_heads"]
        vocab = params.get("vocab_size", -1)
        return cls(
            num_layers=params["n_layers"],
            num_heads=heads,
            num_kv_heads=params.get("n_kv_heads") or heads,
            dim=params["dim"],
            head_dim=params["dim"] // heads,
            hidden_dim=None,
            vocab_size=vocab if vocab and vocab > 0 else None,
        )

    def expected_shapes(self) -> dict[str, tuple[Optional[int], ...]]:
        """Our key -> shape; None stands for a size the config leaves open."""
        d, hd, h, kv, ff, v = self.dim, self.head_dim, self.num_heads, self.num_kv_heads, self.hidden_dim, self.vocab_size
        shapes: dict[str, tuple[Optional[int], ...]] = {
            "tok_embeddings.weight": (v, d), "norm.scale": (d,), "output.weight": (v, d)}
        for i in range(self.num_layers):
            p = f"layers.{i}."
            shapes.update({
                p + "sa_norm.scale": (d,), p + "mlp_norm.scale": (d,),
                p + "attn.q_proj.weight": (h * hd, d), p + "attn.k_proj.weight": (kv * hd, d),
                p + "attn.v_proj.weight": (kv * hd, d), p + "attn.output_proj.weight": (d, h * hd),
                p + "mlp.w1.weight": (ff, d), p + "mlp.w2.weight": (d, ff), p + "mlp.w3.weight": (ff, d),
            })
            if self.qkv_bias:
                shapes.update({p + "attn.q_proj.bias": (h * hd,), p + "attn.k_proj.bias": (kv * hd,),
                               p + "attn.v_proj.bias": (kv * hd,)})
            if self.qk_norm:
                shapes.update({p + "attn.q_norm.scale": (hd,), p + "attn.k_norm.scale": (hd,)})
            if self.sandwich_norms:
                shapes.update({p + "sa_post_norm.scale": (d,), p + "mlp_post_norm.scale": (d,)})
        return shapes


class _KeyMap:
    """Renames between our keys and another layout: whole-key renames plus per-layer suffix renames."""

    def __init__(self, top: dict[str, str], layer_prefix: str, layer: dict[str, str], ignore: tuple[str, ...] = ()):
        self.top, self.top_back = top, {v: k for k, v in top.items()}
        self.layer, self.layer_back = layer, {v: k for k, v in layer.items()}
        self.layer_re = re.compile(rf"^{re.escape(layer_prefix)}(\d+)\.(.+)$")
        self.layer_prefix = layer_prefix
        self.ignore = [re.compile(p) for p in ignore]
        self.ignore_patterns = ignore

    def to_theirs(self, key: str) -> str:
        if key in self.top:
            return self.top[key]
        m = re.match(r"^layers\.(\d+)\.(.+)$", key)
        if m and m.group(2) in self.layer:
            return f"{self.layer_prefix}{m.group(1)}.{self.layer[m.group(2)]}"
        raise CheckpointFormatError(f"state dict key {key!r} is not a decoder parameter: save only the model's own parameters")

    def to_ours(self, key: str, source: str) -> Optional[str]:
        """Our name for `key` read from `source`; None for buffers we rebuild (e.g. rotary tables)."""
        if key in self.top_back:
            return self.top_back[key]
        m = self.layer_re.match(key)
        if m and m.group(2) in self.layer_back:
            return f"layers.{m.group(1)}.{self.layer_back[m.group(2)]}"
        if any(p.search(key) for p in self.ignore):
            return None
        raise CheckpointFormatError(
            f"{source}: unexpected key {key!r} for a supported checkpoint: point the checkpointer at "
            "weights of a supported architecture in the layout it reads (FullModelHFCheckpointer for HF, FullModelMetaCheckpointer for consolidated.*.pth)"
        )


HF_KEYS = _KeyMap(
    top={"tok_embeddings.weight": "model.embed_tokens.weight", "norm.scale": "model.norm.weight", "output.weight": "lm_head.weight"},
    layer_prefix="model.layers.",
    layer={
        "attn.q_proj.weight": "self_attn.q_proj.weight", "attn.k_proj.weight": "self_attn.k_proj.weight",
        "attn.v_proj.weight": "self_attn.v_proj.weight", "attn.output_proj.weight": "self_attn.o_proj.weight",
        "mlp.w1.weight": "mlp.gate_proj.weight", "mlp.w2.weight": "mlp.down_proj.weight", "mlp.w3.weight": "mlp.up_proj.weight",
        "sa_norm.scale": "input_layernorm.weight", "mlp_norm.scale": "post_attention_layernorm.weight",
        # Qwen2/2.5 q/k/v biases and Qwen3's per-head q/k norms
        "attn.q_proj.bias": "self_attn.q_proj.bias", "attn.k_proj.bias": "self_attn.k_proj.bias",
        "attn.v_proj.bias": "self_attn.v_proj.bias",
        "attn.q_norm.scale": "self_attn.q_norm.weight", "attn.k_norm.scale": "self_attn.k_norm.weight",
    },
    ignore=(r"rotary_emb\.inv_freq$",),
)

# Gemma-2/3: `post_attention_layernorm` is the norm on attention's output (not the MLP's input norm, as in Llama).
GEMMA_HF_KEYS = _KeyMap(
    top=HF_KEYS.top,
    layer_prefix="model.layers.",
    layer={
        **HF_KEYS.layer,
        "sa_norm.scale": "input_layernorm.weight", "sa_post_norm.scale": "post_attention_layernorm.weight",
        "mlp_norm.scale": "pre_feedforward_layernorm.weight", "mlp_post_norm.scale": "post_feedforward_layernorm.weight",
    },
    ignore=HF_KEYS.ignore_patterns,
)

META_KEYS = _KeyMap(
    top={"tok_embeddings.weight": "tok_embeddings.weight", "norm.scale": "norm.weight", "output.weight": "output.weight"},
    layer_prefix="layers.",
    layer={
        "attn.q_proj.weight": "attention.wq.weight", "attn.k_proj.weight": "attention.wk.weight",
        "attn.v_proj.weight": "attention.wv.weight", "attn.output_proj.weight": "attention.wo.weight",
        "mlp.w1.weight": "feed_forward.w1.weight", "mlp.w2.weight": "feed_forward.w2.weight",
        "mlp.w3.weight": "feed_forward.w3.weight",
        "sa_norm.scale": "attention_norm.weight", "mlp_norm.scale": "ffn_norm.weight",
    },
    ignore=(r"^rope\.freqs$",),
)

# Our LoRA target-module names -> the HF module names PEFT's `target_modules` uses.
HF_MODULE_NAMES = {"q_proj": "q_proj", "k_proj": "k_proj", "v_proj": "v_proj", "output_proj": "o_proj",
                   "w1": "gate_proj", "w2": "down_proj", "w3": "up_proj", "output": "lm_head"}


_ROTARY_SUFFIXES = ("weight", "bias", "lora_b.weight")


def rotary_heads(key: str, shape: ModelShape) -> Optional[int]:
    """Number of heads whose rows HF permutes for this (our) key, or None if RoPE does not see its rows.

    Every tensor indexed by q/k output rows moves with them: the weights, Qwen2's biases, a LoRA `lora_b`,
    and Qwen3's q/k norm scales (one head's worth of rows, so 1 "head")."""
    if any(key.endswith(f"attn.q_proj.{s}") for s in _ROTARY_SUFFIXES):
        return shape.num_heads
    if any(key.endswith(f"attn.k_proj.{s}") for s in _ROTARY_SUFFIXES):
        return shape.num_kv_heads
    if key.endswith("attn.q_norm.scale") or key.endswith("attn.k_norm.scale"):
        return 1
    return None


def interleaved_to_hf(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rows of each head from pairs `(2i, 2i+1)` to halves `[evens..., odds...]`. w: [n_heads * head_dim, cols]
    or [n_heads * head_dim] (a bias or norm scale)."""
    if w.dim() == 1:
        return interleaved_to_hf(w.unsqueeze(1), n_heads).squeeze(1)
    rows, cols = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def hf_to_interleaved(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Inverse of `interleaved_to_hf`. w: [n_heads * head_dim, cols] or [n_heads * head_dim]."""
    if w.dim() == 1:
        return hf_to_interleaved(w.unsqueeze(1), n_heads).squeeze(1)
    rows, cols = w.shape
    return w.reshape(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)


def lora_key_to_hf(key: str) -> str:
    """`layers.0.attn.q_proj.lora_a.weight` -> `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`."""
    module, part = split_adapter_key(key)
    hf_module = HF_KEYS.to_theirs(module + ".weight")[: -len(".weight")]
    return f"base_model.model.{hf_module}.lora_{part.upper()}.weight"


def lora_key_from_hf(key: str, source: str) -> str:
    m = re.match(r"^base_model\.model\.(.+)\.lora_([AB])(?:\.default)?\.weight$", key)
    if not m:
        raise CheckpointFormatError(
            f"{source}: key {key!r} is not a PEFT LoRA weight: give adapter_checkpoint an adapter saved by "
            "torchtune_lite or peft (LoRA, bias='none')")
    ours = HF_KEYS.to_ours(m.group(1) + ".weight", source)
    if ours is None:
        raise CheckpointFormatError(f"{source}: LoRA on {m.group(1)!r} is not supported: target the decoder's linear layers only")
    return f"{ours[: -len('.weight')]}.lora_{m.group(2).lower()}.weight"
