"""Reads a Hugging Face `config.json` into `DecoderArgs`, for the architectures this project builds exactly.

Everything the model's shape and numerics depend on comes from the file: sizes, GQA, head_dim, RoPE base
and scaling, norm epsilon, q/k/v biases, per-head q/k norms and tied embeddings. Anything the decoder
cannot honour (another architecture, a RoPE scaling type, an active sliding window, MLP biases) is a
one-line error instead of a silently different model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Union

from torchtune_lite.models._decoder import DecoderArgs
from torchtune_lite.modules import Llama3RopeScaling

# architectures entry -> the family switches that config.json does not spell out
SUPPORTED_ARCHITECTURES: dict[str, dict[str, bool]] = {
    "LlamaForCausalLM": {"qkv_bias": False, "qk_norm": False},
    "MistralForCausalLM": {"qkv_bias": False, "qk_norm": False},
    "Qwen2ForCausalLM": {"qkv_bias": True, "qk_norm": False},
    "Qwen3ForCausalLM": {"qkv_bias": False, "qk_norm": True},
}
SUPPORTED_ROPE_TYPES = ("default", "llama3")


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
    raise UnsupportedModelConfigError(
        f"{source}: architectures {names} is not supported: this project builds {sorted(SUPPORTED_ARCHITECTURES)} "
        "(use a checkpoint of one of those)"
    )


def _rope(config: dict[str, Any], source: str) -> tuple[float, Optional[Llama3RopeScaling]]:
    # transformers < 5 writes rope_theta + rope_scaling; 5.x writes both into rope_parameters
    params = dict(config.get("rope_parameters") or {})
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
    family = SUPPORTED_ARCHITECTURES[architecture_of(config, source)]
    if config.get("mlp_bias"):
        raise UnsupportedModelConfigError(f"{source}: mlp_bias=true is not supported: use a checkpoint without MLP biases")
    if config.get("hidden_act", "silu") != "silu":
        raise UnsupportedModelConfigError(f"{source}: hidden_act {config['hidden_act']!r} is not supported: the MLP is SwiGLU (silu)")
    window = config.get("sliding_window")
    uses_window = config.get("use_sliding_window", True)  # Qwen2 declares a window it does not use
    length = int(max_seq_len or config.get("max_position_embeddings") or 4096)
    if window and uses_window and length > int(window):
        raise UnsupportedModelConfigError(
            f"{source}: sliding_window={window} attention is not supported: set max_seq_len <= {window} "
            "(the window then never limits attention)"
        )
    rope_base, rope_scaling = _rope(config, source)
    try:
        heads = int(config["num_attention_heads"])
        return DecoderArgs(
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
    except KeyError as err:
        raise UnsupportedModelConfigError(f"{source} lacks {err}: use the config.json that came with the weights") from err
