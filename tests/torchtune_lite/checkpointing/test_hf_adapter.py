"""LoRA adapters saved in PEFT's format: read by `peft.PeftModel`, and read back by us bitwise."""

from __future__ import annotations

import json

import peft
import pytest
import torch
import transformers

from torchtune_lite.checkpointing import FullModelHFCheckpointer

RANK, ALPHA = 4, 8.0


def _random_adapter(num_kv_heads: int, heads: int, dim: int, layers: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    head_dim = dim // heads
    out = {"q_proj": heads * head_dim, "v_proj": num_kv_heads * head_dim, "k_proj": num_kv_heads * head_dim}
    adapter = {}
    for i in range(layers):
        for proj in ("q_proj", "k_proj", "v_proj"):
            adapter[f"layers.{i}.attn.{proj}.lora_a.weight"] = 0.3 * torch.randn(RANK, dim, generator=g)
            adapter[f"layers.{i}.attn.{proj}.lora_b.weight"] = 0.3 * torch.randn(out[proj], RANK, generator=g)
    return adapter


def test_peft_loads_our_adapter_like_the_merged_model(hf_tools, tmp_path, num_kv_heads, tokens):
    t = hf_tools
    base = t.tiny_hf_model(num_kv_heads)
    src = t.save_hf(base, tmp_path / "hf")
    ckpt = FullModelHFCheckpointer(src, None, "LLAMA2", tmp_path / "out")
    loaded = dict(ckpt.iter_model())
    adapter = _random_adapter(num_kv_heads, t.HEADS, t.DIM, t.LAYERS)
    config = {"lora_alpha": ALPHA, "target_modules": ["q_proj", "k_proj", "v_proj"]}

    adapter_dir = ckpt.save_checkpoint({"adapter": adapter, "adapter_config": config}, epoch=0) / "adapter"
    saved_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert saved_config["r"] == RANK and saved_config["peft_type"] == "LORA"
    assert saved_config["target_modules"] == ["k_proj", "q_proj", "v_proj"]
    with_adapter = peft.PeftModel.from_pretrained(t.tiny_hf_model(num_kv_heads), adapter_dir).eval()
    peft_logits = t.hf_logits(with_adapter, tokens)
    assert not torch.allclose(peft_logits, t.hf_logits(base, tokens), atol=1e-3)  # the adapter matters

    # LoRA keys inside "model" are merged (W + alpha/r * B @ A) into the full-model files.
    merged_dir = ckpt.save_checkpoint({"model": {**loaded, **adapter}, "adapter_config": config}, epoch=1)
    merged = transformers.LlamaForCausalLM.from_pretrained(merged_dir, attn_implementation="eager").eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())  # the adapter sits apart
    torch.testing.assert_close(t.hf_logits(merged, tokens), peft_logits, atol=1e-5, rtol=1e-5)

    # Read back from the adapter folder, or the checkpoint folder holding it (as a resume does).
    for where in (adapter_dir, merged_dir):
        back = FullModelHFCheckpointer(src, None, "LLAMA2", tmp_path / "x", adapter_checkpoint=where).load_checkpoint()
        assert set(back["adapter"]) == set(adapter)
        assert all(torch.equal(back["adapter"][k], adapter[k]) for k in adapter)


def test_peft_logits_match_our_lora_model(hf_tools, tmp_path, num_kv_heads, tokens):
    try:
        from torchtune_lite.models.llama2 import lora_llama2
    except ImportError as err:
        pytest.skip(f"torchtune_lite.models.llama2.lora_llama2 not importable yet: {err}")
    t = hf_tools
    src = t.save_hf(t.tiny_hf_model(num_kv_heads), tmp_path / "hf")
    ckpt = FullModelHFCheckpointer(src, None, "LLAMA2", tmp_path / "out")
    model = lora_llama2(["q_proj", "k_proj", "v_proj"], vocab_size=t.VOCAB, num_layers=t.LAYERS, num_heads=t.HEADS,
                        num_kv_heads=num_kv_heads, embed_dim=t.DIM, max_seq_len=64, intermediate_dim=t.HIDDEN,
                        norm_eps=1e-6, lora_rank=RANK, lora_alpha=ALPHA).eval()
    adapter = _random_adapter(num_kv_heads, t.HEADS, t.DIM, t.LAYERS)
    model.load_state_dict({**dict(ckpt.iter_model()), **adapter})
    out = ckpt.save_checkpoint({"adapter": adapter, "adapter_config": {"lora_alpha": ALPHA}}, epoch=0) / "adapter"
    with_adapter = peft.PeftModel.from_pretrained(t.tiny_hf_model(num_kv_heads), out).eval()
    with torch.no_grad():
        ours = model(tokens)
    torch.testing.assert_close(ours, t.hf_logits(with_adapter, tokens), atol=1e-5, rtol=1e-5)


def test_adapter_needs_lora_alpha(hf_tools, tmp_path):
    src = hf_tools.save_hf(hf_tools.tiny_hf_model(), tmp_path / "hf")
    ckpt = FullModelHFCheckpointer(src, None, "LLAMA2", tmp_path / "out")
    adapter = _random_adapter(hf_tools.HEADS, hf_tools.HEADS, hf_tools.DIM, 1)
    with pytest.raises(ValueError, match="lora_alpha"):
        ckpt.save_checkpoint({"adapter": adapter}, epoch=0)
    assert not (tmp_path / "out" / "epoch_0").exists()
