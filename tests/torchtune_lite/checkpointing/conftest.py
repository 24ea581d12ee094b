"""Tiny real Hugging Face Llama checkpoints written to tmp folders for the checkpointer tests."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import transformers

VOCAB, DIM, HIDDEN, LAYERS, HEADS = 64, 32, 48, 2, 4


def tiny_config(num_kv_heads: int = HEADS, tie: bool = False) -> transformers.LlamaConfig:
    return transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=DIM, intermediate_size=HIDDEN, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=num_kv_heads, max_position_embeddings=64,
        rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=tie, attn_implementation="eager",
    )


def tiny_hf_model(num_kv_heads: int = HEADS, tie: bool = False, seed: int = 0) -> transformers.LlamaForCausalLM:
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(tiny_config(num_kv_heads, tie)).eval()
    with torch.no_grad():  # norms start at 1 and would hide a mix-up between them
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def save_hf(model: transformers.LlamaForCausalLM, path: Path, bin: bool = False, **kwargs) -> Path:
    """`save_pretrained`; with `bin=True` an old-style `pytorch_model.bin` (transformers 5 writes only safetensors)."""
    if bin:
        model.config.save_pretrained(path)
        torch.save(model.state_dict(), path / "pytorch_model.bin")
    else:
        model.save_pretrained(path, **kwargs)
    return path


def hf_logits(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(tokens).logits


@pytest.fixture(params=[HEADS, 2], ids=["mha", "gqa"])
def num_kv_heads(request) -> int:
    return request.param


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(1))


@pytest.fixture
def hf_tools() -> SimpleNamespace:
    """The helpers above plus the tiny sizes, for tests (conftest modules cannot be imported by name)."""
    return SimpleNamespace(tiny_hf_model=tiny_hf_model, save_hf=save_hf, hf_logits=hf_logits,
                           VOCAB=VOCAB, DIM=DIM, HIDDEN=HIDDEN, LAYERS=LAYERS, HEADS=HEADS)
