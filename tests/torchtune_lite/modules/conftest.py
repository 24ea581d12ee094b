"""Tiny Llama configs and a Hugging Face reference model with the same weights as ours."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

TINY = dict(vocab_size=64, num_layers=2, num_heads=4, embed_dim=32, intermediate_dim=48, max_seq_len=32, norm_eps=1e-5)


def hf_to_meta_qk(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """HF stores each head's rows as [2 halves, head_dim/2 pairs] (rotate-half); Meta as [pairs, 2]."""
    out_dim, dim = w.shape
    head_dim = out_dim // n_heads
    return w.view(n_heads, 2, head_dim // 2, dim).transpose(1, 2).reshape(out_dim, dim)


def hf_config(num_kv_heads: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=TINY["vocab_size"],
        hidden_size=TINY["embed_dim"],
        intermediate_size=TINY["intermediate_dim"],
        num_hidden_layers=TINY["num_layers"],
        num_attention_heads=TINY["num_heads"],
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=TINY["max_seq_len"],
        rms_norm_eps=TINY["norm_eps"],
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        attn_implementation="eager",
    )


def hf_to_ours(hf_state: dict, num_heads: int, num_kv_heads: int) -> dict:
    """Converts a LlamaForCausalLM state dict to torchtune_lite keys (independent of the library's converter)."""
    ours = {
        "tok_embeddings.weight": hf_state["model.embed_tokens.weight"],
        "norm.scale": hf_state["model.norm.weight"],
        "output.weight": hf_state["lm_head.weight"],
    }
    names = {
        "self_attn.v_proj": "attn.v_proj",
        "self_attn.o_proj": "attn.output_proj",
        "mlp.gate_proj": "mlp.w1",
        "mlp.down_proj": "mlp.w2",
        "mlp.up_proj": "mlp.w3",
        "input_layernorm": "sa_norm",
        "post_attention_layernorm": "mlp_norm",
    }
    for key, value in hf_state.items():
        if not key.startswith("model.layers."):
            continue
        _, _, i, *rest = key.split(".")
        module = ".".join(rest[:-1])
        if module == "self_attn.q_proj":
            ours[f"layers.{i}.attn.q_proj.weight"] = hf_to_meta_qk(value, num_heads)
        elif module == "self_attn.k_proj":
            ours[f"layers.{i}.attn.k_proj.weight"] = hf_to_meta_qk(value, num_kv_heads)
        else:
            suffix = "scale" if "layernorm" in module else "weight"
            ours[f"layers.{i}.{names[module]}.{suffix}"] = value
    return ours


@pytest.fixture(params=[4, 2], ids=["mha", "gqa"])
def num_kv_heads(request) -> int:
    return request.param


@pytest.fixture
def hf_model(num_kv_heads: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    model = LlamaForCausalLM(hf_config(num_kv_heads)).eval()
    with torch.no_grad():  # HF initialises norms to 1; random scales make the comparison stricter
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
    return model


# Helpers as fixtures: test files in this folder and below can use them without importing `conftest`
# (a module name other helpers' conftest.py files share).
@pytest.fixture
def tiny() -> dict:
    return dict(TINY)


@pytest.fixture
def convert_hf_state_dict():
    return hf_to_ours


@pytest.fixture
def hf_qk_to_meta():
    return hf_to_meta_qk
