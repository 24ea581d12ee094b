"""Reads a Hugging Face `config.json` into `DecoderArgs`, for the architectures this project builds exactly.

Everything the model's shape and numerics depend on comes from the file: sizes, GQA, head_dim, RoPE base
and scaling, norm epsilon, q/k/v biases, per-head q/k norms and tied embeddings; for Gemma-2/3 also the
soft-caps, query_pre_attn_scalar, the sliding window and which layers use it, and Gemma-3's local RoPE
base. Anything the decoder cannot honour (another architecture, a RoPE scaling type, an active sliding
window outside Gemma, MLP biases) is a one-line error instead of a silently different model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Union

from torchtune_lite.models._decoder import GEMMA_SWITCHES, DecoderArgs, alternating_layer_types
from torchtune_lite.modules import Llama3RopeScaling
from torchtune_lite.modules.position_embeddings import LinearRopeScaling, RopeScaling

# architectures entry -> the family switches that config.json does not spell out
SUPPORTED_ARCHITECTURES: dict[str, dict[str, bool]] = {
    "LlamaForCausalLM": {"qkv_bias": False, "qk_norm": False},
    "MistralForCausalLM": {"qkv_bias": False, "qk_norm": False},
    "Qwen2ForCausalLM": {"qkv_bias": True, "qk_norm": False},
    "Qwen3ForCausalLM": {"qkv_bias": False, "qk_norm": True},
    "Gemma2ForCausalLM": {"qkv_bias": False, "qk_norm": False},
    "Gemma3ForCausalLM": {"qkv_bias": False, "qk_norm": True},
}
GEMMA_ARCHITECTURES = ("Gemma2ForCausalLM", "Gemma3ForCausalLM")
SUPPORTED_ROPE_TYPES = ("default", "llama3", "linear")


class UnsupportedModelConfigError(ValueError):
    """config.json describes a model this project cannot build exactly."""


class ModelConfigNotFoundError(FileNotFoundError):
    """The checkpoint folder has no config.json."""


def read_hf_config(checkpoint_dir: Union[str, Path]) -> dict[str, Any]:
    """The parsed `checkpoint_dir/config.json`, with one-line errors for a missing or unreadable file."""
    path = Path(checkpoint_dir).expanduser() / "config.json"
    if not path.is_file():
        raise ModelConfigNotFoundError(
            f"{path} not found: point checkpoint_dir at a Hugging Face model folder (with its config.json), "
            "e.g. from `tune download <repo> --output-dir <dir>`"
        )
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UnsupportedModelConfigError(f"{path} is not valid JSON ({err}): download the model's config.json again") from err
    if not isinstance(config, dict):
        raise UnsupportedModelConfigError(f"{path} does not hold a JSON object: download the model's config.json again")
    return config


def architecture_of(config: dict[str, Any], source: str = "config.json") -> str:
    """The supported `architectures` entry of `config`, or a one-line error naming the supported ones."""
    names = config.get("architectures") or []
    for name in names:
        if name in SUPPORTED_ARCHITECTURES:
            return name
    if "Gemma3ForConditionalGeneration" in names:
        raise UnsupportedModelConfigError(
            f"{source}: Gemma3ForConditionalGeneration (the multimodal Gemma-3 4B/12B/27B folders) is not supported: "
            "use a text-only Gemma3ForCausalLM checkpoint (e.g. google/gemma-3-1b-it, or the 4B's language model saved "
            "with transformers' Gemma3ForCausalLM)"
        )
    raise UnsupportedModelConfigError(
        f"{source}: architectures {names} is not supported: this project builds {sorted(SUPPORTED_ARCHITECTURES)} "
        "(use a checkpoint of one of those)"
    )


def _rope(config: dict[str, Any], source: str) -> tuple[float, Optional[RopeScaling]]:
    # transformers < 5 writes rope_theta + rope_scaling; 5.x writes both into rope_parameters
    params = dict(config.get("rope_parameters") or {})
    if "full_attention" in params:  # Gemma-3 under 5.x: one entry per layer type; this is the global one
        params = dict(params["full_attention"] or {})
    scaling = config.get("rope_scaling") or {}
    theta = params.get("rope_theta", config.get("rope_theta", 10_000.0))
    rope_type = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise UnsupportedModelConfigError(
            f"{source}: rope_scaling type {rope_type!r} is not supported: supported types are "
            f"{list(SUPPORTED_ROPE_TYPES)} (remove rope_scaling to train at the original context length)"
        )
    if rope_type == "default":
        return float(theta), None
    fields = {**scaling, **params}
    if rope_type == "linear":
        return float(theta), LinearRopeScaling(factor=float(fields.get("factor", 1.0)))
    try:
        return float(theta), Llama3RopeScaling(
            factor=float(fields["factor"]),
            low_freq_factor=float(fields["low_freq_factor"]),
            high_freq_factor=float(fields["high_freq_factor"]),
            original_max_position_embeddings=int(fields["original_max_position_embeddings"]),
        )
    except KeyError as err:
        raise UnsupportedModelConfigError(f"{source}: llama3 rope_scaling lacks {err}: use the config.json that came with the weights") from err


def decoder_args_from_hf_config(
    config: dict[str, Any], *, source: str = "config.json", max_seq_len: Optional[int] = None
) -> DecoderArgs:
    """`DecoderArgs` for a supported HF config; `max_seq_len` defaults to its `max_position_embeddings`."""
    architecture = architecture_of(config, source)
    family = SUPPORTED_ARCHITECTURES[architecture]
    gemma = architecture in GEMMA_ARCHITECTURES
    if config.get("mlp_bias"):
        raise UnsupportedModelConfigError(f"{source}: mlp_bias=true is not supported: use a checkpoint without MLP biases")
    if not gemma and config.get("hidden_act", "silu") != "silu":
        raise UnsupportedModelConfigError(f"{source}: hidden_act {config['hidden_act']!r} is not supported: the MLP is SwiGLU (silu)")
    window = config.get("sliding_window")
    uses_window = config.get("use_sliding_window", True)  # Qwen2 declares a window it does not use
    length = int(max_seq_len or config.get("max_position_embeddings") or 4096)
    if not gemma and window and uses_window and length > int(window):
        raise UnsupportedModelConfigError(
            f"{source}: sliding_window={window} attention is not supported: set max_seq_len <= {window} "
            "(the window then never limits attention)"
        )
    rope_base, rope_scaling = _rope(config, source)
    try:
        heads = int(config["num_attention_heads"])
        gemma_args = _gemma_args(config, architecture, source) if gemma else {}
        fields = dict(
            vocab_size=int(config["vocab_size"]),
            num_layers=int(config["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads") or heads),
            embed_dim=int(config["hidden_size"]),
            intermediate_dim=int(config["intermediate_size"]),
            max_seq_len=length,
            head_dim=config.get("head_dim") or None,
            attn_dropout=float(config.get("attention_dropout", 0.0)),
            norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_base=rope_base,
            rope_scaling=rope_scaling,
            qkv_bias=family["qkv_bias"] or bool(config.get("attention_bias", False)),
            qk_norm=family["qk_norm"],
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        )
        return DecoderArgs(**{**fields, **gemma_args})
    except KeyError as err:
        raise UnsupportedModelConfigError(f"{source} lacks {err}: use the config.json that came with the weights") from err


def _gemma_args(config: dict[str, Any], architecture: str, source: str) -> dict[str, Any]:
    """The Gemma-2/3 `DecoderArgs` switches; defaults are transformers' `Gemma2Config`/`Gemma3TextConfig` ones."""
    gemma2 = architecture == "Gemma2ForCausalLM"
    activation = config.get("hidden_activation") or config.get("hidden_act") or "gelu_pytorch_tanh"
    if activation != "gelu_pytorch_tanh":
        raise UnsupportedModelConfigError(f"{source}: hidden_activation {activation!r} is not supported: Gemma's MLP is GeGLU (gelu_pytorch_tanh)")
    if config.get("attention_bias") or config.get("use_bidirectional_attention"):
        raise UnsupportedModelConfigError(
            f"{source}: attention_bias / use_bidirectional_attention are not supported for Gemma: use a causal checkpoint without biases"
        )
    num_layers = int(config["num_hidden_layers"])
    layer_types = config.get("layer_types") or alternating_layer_types(
        num_layers, 2 if gemma2 else int(config.get("sliding_window_pattern") or 6)
    )
    local_base = None
    if not gemma2:
        params = config.get("rope_parameters") or {}
        local_base = (params.get("sliding_attention") or {}).get("rope_theta") or config.get("rope_local_base_freq") or 10_000.0
    head_dim = config.get("head_dim") or int(config["hidden_size"]) // int(config["num_attention_heads"])
    return dict(
        GEMMA_SWITCHES,
        tie_word_embeddings=bool(config.get("tie_word_embeddings", True)),
        query_pre_attn_scalar=float(config.get("query_pre_attn_scalar") or head_dim),
        attn_softcap=config.get("attn_logit_softcapping", 50.0 if gemma2 else None),
        final_logit_softcap=config.get("final_logit_softcapping", 30.0 if gemma2 else None),
        sliding_window=int(config.get("sliding_window") or 4096),
        layer_types=tuple(layer_types),
        rope_local_base=None if local_base is None else float(local_base),
    )
