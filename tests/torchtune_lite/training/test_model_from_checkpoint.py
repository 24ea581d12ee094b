"""`build_model_from_checkpoint`: the one build every recipe, generation and evaluation use, against HF
transformers' model on the same checkpoint, with fresh, loaded and merged adapters."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from tests.torchtune_lite.checkpointing import conftest as hf_checkpoints
from torchtune_lite.modules.peft import get_adapter_state_dict
from torchtune_lite.checkpointing import FullModelHFCheckpointer
from torchtune_lite.training.model_from_checkpoint import build_model_from_checkpoint

CPU = torch.device("cpu")


@pytest.fixture
def hf_tools() -> SimpleNamespace:
    c = hf_checkpoints
    return SimpleNamespace(tiny_hf_model=c.tiny_hf_model, save_hf=c.save_hf, hf_logits=c.hf_logits,
                           VOCAB=c.VOCAB, DIM=c.DIM, HIDDEN=c.HIDDEN, LAYERS=c.LAYERS, HEADS=c.HEADS)


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, hf_checkpoints.VOCAB, (2, 7), generator=torch.Generator().manual_seed(1))


def _components(t) -> tuple:
    shape = dict(vocab_size=t.VOCAB, num_layers=t.LAYERS, num_heads=t.HEADS, num_kv_heads=t.HEADS, embed_dim=t.DIM,
                 intermediate_dim=t.HIDDEN, max_seq_len=64, norm_eps=1e-6)
    plain = OmegaConf.create({"_component_": "torchtune_lite.models.llama2.llama2", **shape})
    lora = OmegaConf.create({"_component_": "torchtune_lite.models.llama2.lora_llama2", **shape,
                             "lora_attn_modules": ["q_proj", "v_proj"], "lora_rank": 2, "lora_alpha": 8.0})
    return plain, lora


def _logits(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(tokens)


def test_plain_build_matches_transformers_and_fresh_adapters_follow_the_seed(hf_tools, tmp_path, tokens):
    t = hf_tools
    hf = t.tiny_hf_model()
    checkpointer = FullModelHFCheckpointer(t.save_hf(hf, tmp_path / "base"), output_dir=tmp_path / "out")
    plain_cfg, lora_cfg = _components(t)
    plain = build_model_from_checkpoint(plain_cfg, checkpointer, device=CPU, dtype=torch.float32)
    torch.testing.assert_close(_logits(plain, tokens), t.hf_logits(hf, tokens), rtol=1e-5, atol=1e-5)

    first = build_model_from_checkpoint(lora_cfg, checkpointer, device=CPU, dtype=torch.float32, adapter_seed=3)
    again = build_model_from_checkpoint(lora_cfg, checkpointer, device=CPU, dtype=torch.float32, adapter_seed=3)
    other = build_model_from_checkpoint(lora_cfg, checkpointer, device=CPU, dtype=torch.float32, adapter_seed=4)
    a_key = "layers.0.attn.q_proj.lora_a.weight"
    assert torch.equal(first.state_dict()[a_key], again.state_dict()[a_key])
    assert not torch.equal(first.state_dict()[a_key], other.state_dict()[a_key])
    # lora_b starts at zero: a fresh LoRA model is its base
    torch.testing.assert_close(_logits(first, tokens), _logits(plain, tokens), rtol=0, atol=0)


def test_a_saved_adapter_loads_into_a_lora_model_or_merges_into_a_plain_one_alike(hf_tools, tmp_path, tokens):
    t = hf_tools
    base_dir = t.save_hf(t.tiny_hf_model(), tmp_path / "base")
    plain_cfg, lora_cfg = _components(t)
    trained = build_model_from_checkpoint(
        lora_cfg, FullModelHFCheckpointer(base_dir, output_dir=tmp_path / "out"), device=CPU, dtype=torch.float32
    )
    with torch.no_grad():  # adapters that change the model, as training leaves them
        for name, param in trained.named_parameters():
            if "lora_b" in name:
                param.normal_(std=0.1, generator=torch.Generator().manual_seed(0))
    saved = FullModelHFCheckpointer(base_dir, output_dir=tmp_path / "out").save_checkpoint(
        {"adapter": get_adapter_state_dict(trained.state_dict()), "adapter_config": {"lora_alpha": 8.0}}, epoch=0
    )
    checkpointer = FullModelHFCheckpointer(base_dir, output_dir=tmp_path / "o2", adapter_checkpoint=saved / "adapter")
    adapter = checkpointer.load_checkpoint()["adapter"]
    expected = _logits(trained, tokens)

    in_lora = build_model_from_checkpoint(lora_cfg, checkpointer, device=CPU, dtype=torch.float32, adapter=adapter)
    torch.testing.assert_close(_logits(in_lora, tokens), expected, rtol=0, atol=0)
    merged = build_model_from_checkpoint(plain_cfg, checkpointer, device=CPU, dtype=torch.float32, adapter=adapter)
    torch.testing.assert_close(_logits(merged, tokens), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(expected, _logits(build_model_from_checkpoint(plain_cfg, checkpointer, device=CPU,
                                                                            dtype=torch.float32), tokens), atol=1e-3)
