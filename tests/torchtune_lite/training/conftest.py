"""Tiny models shared by the training-mechanics tests."""

import pytest
import torch

from torchtune_lite.models.llama2 import llama2, lora_llama2

TINY = dict(vocab_size=64, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=32, intermediate_dim=48, max_seq_len=32)


@pytest.fixture
def tiny_llama() -> torch.nn.Module:
    torch.manual_seed(0)
    return llama2(**TINY)


@pytest.fixture
def tiny_lora_llama() -> torch.nn.Module:
    """LoRA on q/v, the MLP and the output projection, with dropout (so RNG handling matters)."""
    torch.manual_seed(0)
    model = lora_llama2(
        ["q_proj", "v_proj"], apply_lora_to_mlp=True, apply_lora_to_output=True,
        lora_rank=4, lora_alpha=8.0, lora_dropout=0.1, **TINY,
    )
    for name, p in model.named_parameters():
        if "lora_b" in name:  # nonzero adapters, so their gradients and outputs are not trivially zero
            torch.nn.init.normal_(p, std=0.1)
    return model


@pytest.fixture
def tiny_qlora_llama() -> torch.nn.Module:
    """QLoRA (NF4 base) on q/v and the MLP, dim 64 so every adapted base fits NF4's blocks; nonzero adapters."""
    from torchtune_lite.models.llama2 import qlora_llama2

    torch.manual_seed(0)
    model = qlora_llama2(["q_proj", "v_proj"], apply_lora_to_mlp=True, lora_rank=4, lora_alpha=8.0,
                         **{**TINY, "embed_dim": 64, "intermediate_dim": 128})
    for name, p in model.named_parameters():
        if "lora_b" in name:
            torch.nn.init.normal_(p, std=0.1)
    return model
