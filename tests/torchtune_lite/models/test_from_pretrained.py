"""Every supported family built from its config.json matches transformers on the same tiny random checkpoint:
logits (with and without a KV cache), merged checkpoints and PEFT adapters, and QLoRA's quantized linears."""

from __future__ import annotations

import json
import warnings

import peft
import pytest
import torch
import transformers

from torchtune_lite._torchao import NF4Tensor
from torchtune_lite.inference.generation import generate
from torchtune_lite.models import from_pretrained_config
from torchtune_lite.models._hf_config import (
    ModelConfigNotFoundError,
    UnsupportedModelConfigError,
    decoder_args_from_hf_config,
)
from torchtune_lite.modules.peft import LoRALinear, get_adapter_params, set_trainable_params
from torchtune_lite.checkpointing import FullModelHFCheckpointer

from tests.torchtune_lite.models.hf_families import FAMILIES, VOCAB, hf_logits, save_tiny_hf, tiny_hf_model

ALL_LORA = dict(lora_attn_modules=["q_proj", "k_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True,
                apply_lora_to_output=True, lora_rank=4, lora_alpha=8.0)


@pytest.fixture(params=sorted(FAMILIES))
def family(request) -> str:
    return request.param


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(1))


def _ours(src, out, **kwargs):
    ckpt = FullModelHFCheckpointer(src, None, "LLAMA3", out)
    model = from_pretrained_config(src, **kwargs).eval()
    missing, unexpected = model.load_state_dict(dict(ckpt.iter_model()), strict=False)
    assert not unexpected and all("lora" in k for k in missing)
    return model, ckpt


def test_logits_match_transformers(family, tmp_path, tokens):
    hf, src = save_tiny_hf(family, tmp_path / "hf")
    model, _ = _ours(src, tmp_path / "out")
    with torch.no_grad():
        ours = model(tokens)
    torch.testing.assert_close(ours, hf_logits(hf, tokens), atol=1e-4, rtol=1e-4)


def test_kv_cache_decoding_matches_transformers(family, tmp_path, tokens):
    hf, src = save_tiny_hf(family, tmp_path / "hf")
    model, _ = _ours(src, tmp_path / "out")
    prompt = tokens[0, :6]
    reference = hf_logits(hf, tokens[:1])[0]
    model.setup_caches(batch_size=1, dtype=torch.float32)
    with torch.no_grad():
        first = model(prompt[None], input_pos=torch.arange(6))[0]
        steps = [model(tokens[:1, i : i + 1], input_pos=torch.tensor([i]))[0, 0] for i in range(6, tokens.size(1))]
    model.teardown_caches()
    torch.testing.assert_close(torch.cat([first, torch.stack(steps)]), reference, atol=1e-4, rtol=1e-4)
    # greedy generation agrees with transformers' own, with the cache and without it
    expected = hf.generate(prompt[None], max_new_tokens=8, do_sample=False, min_new_tokens=8)[0, 6:].tolist()
    for use_cache in (True, False):
        assert generate(model, prompt.tolist(), max_new_tokens=8, use_cache=use_cache) == expected


def test_merged_checkpoint_equals_peft_adapter_on_transformers(family, tmp_path, tokens):
    hf, src = save_tiny_hf(family, tmp_path / "hf")
    (src / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, 2]}))
    model, ckpt = _ours(src, tmp_path / "out", **ALL_LORA)
    # a few steps of training so every adapter (lora_b starts at zero) moves
    set_trainable_params(model, get_adapter_params(model))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        ours = model(tokens)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    out = ckpt.save_checkpoint({"model": state, "adapter_config": {"lora_alpha": 8.0}}, epoch=0)
    for name in ("config.json", "generation_config.json"):
        assert (out / name).is_file()
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["target_modules"] == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"])

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loads without warnings
        merged, info = transformers.AutoModelForCausalLM.from_pretrained(
            out, attn_implementation="eager", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    merged_logits = hf_logits(merged.eval(), tokens)
    torch.testing.assert_close(merged_logits, ours, atol=1e-4, rtol=1e-4)
    with_adapter = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(
        src, attn_implementation="eager"), out / "adapter").eval()
    torch.testing.assert_close(hf_logits(with_adapter, tokens), merged_logits, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(merged_logits, hf_logits(hf, tokens), atol=1e-3)  # training changed the model


def test_tie_kept_when_output_is_not_adapted(tmp_path):
    hf, src = save_tiny_hf("qwen2", tmp_path / "hf")
    model, ckpt = _ours(src, tmp_path / "out", lora_attn_modules=["q_proj", "v_proj"], lora_rank=4, lora_alpha=8.0)
    out = ckpt.save_checkpoint({"model": dict(model.state_dict()), "adapter_config": {"lora_alpha": 8.0}}, epoch=0)
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is True
    merged = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager")
    assert merged.lm_head.weight.data_ptr() == merged.model.embed_tokens.weight.data_ptr()


@pytest.mark.parametrize("family", ["qwen2", "gemma2"])
def test_tied_output_is_the_embedding_and_trains_as_one(family, tmp_path, tokens):
    """Full fine-tuning a tied model: one Parameter for embedding and output (held once), and an SGD step
    on it lands where transformers' step on its tied model lands."""
    hf, src = save_tiny_hf(family, tmp_path / "hf")
    model, _ = _ours(src, tmp_path / "out")
    assert model.output.weight is model.tok_embeddings.weight
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in hf.parameters())
    for m in (model.train(), hf.train()):
        opt = torch.optim.SGD(m.parameters(), lr=1.0)
        logits = m(tokens[:, :-1]) if m is model else m(tokens[:, :-1]).logits
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()
        opt.step()
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(tokens), hf_logits(hf.eval(), tokens), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(hf_logits(hf, tokens), hf_logits(tiny_hf_model(family), tokens), atol=1e-3)


def test_qlora_quantizes_only_lora_linears_and_loss_falls(family, tmp_path, tokens):
    _, src = save_tiny_hf(family, tmp_path / "hf")
    model, _ = _ours(src, tmp_path / "out", lora_attn_modules=["q_proj", "v_proj"], apply_lora_to_mlp=True,
                     lora_rank=4, lora_alpha=8.0, quantize_base=True)
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            assert isinstance(module.weight, NF4Tensor), name
        elif isinstance(module, torch.nn.Linear):
            assert not isinstance(module.weight, NF4Tensor), name
    assert sum(isinstance(m, LoRALinear) for m in model.modules()) == 2 * 5
    set_trainable_params(model, get_adapter_params(model))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1


def test_bad_folders_get_one_line(tmp_path):
    with pytest.raises(ModelConfigNotFoundError, match="config.json not found"):
        from_pretrained_config(tmp_path)
    config = {"architectures": ["GPTNeoXForCausalLM"], "hidden_size": 64}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelConfigError, match=r"GPTNeoXForCausalLM.*LlamaForCausalLM"):
        from_pretrained_config(tmp_path)
    _, src = save_tiny_hf("llama3", tmp_path / "hf")
    config = json.loads((src / "config.json").read_text())
    for key in ("rope_scaling", "rope_parameters"):
        if config.get(key):
            config[key] = {**config[key], "rope_type": "yarn"}
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelConfigError, match=r"'yarn' is not supported.*llama3"):
        from_pretrained_config(src)


def test_configs_the_decoder_cannot_honour():
    mistral_v01 = {"architectures": ["MistralForCausalLM"], "vocab_size": 32000, "hidden_size": 64, "intermediate_size": 96,
                   "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
                   "max_position_embeddings": 32768, "sliding_window": 4096}
    with pytest.raises(UnsupportedModelConfigError, match="sliding_window=4096.*max_seq_len <= 4096"):
        decoder_args_from_hf_config(mistral_v01)
    assert decoder_args_from_hf_config(mistral_v01, max_seq_len=4096).max_seq_len == 4096  # the window never binds
    qwen2 = {**mistral_v01, "architectures": ["Qwen2ForCausalLM"], "use_sliding_window": False}
    assert decoder_args_from_hf_config(qwen2).qkv_bias  # Qwen2 declares a window it does not use
    with pytest.raises(UnsupportedModelConfigError, match="mlp_bias"):
        decoder_args_from_hf_config({**qwen2, "mlp_bias": True})
