import pytest
import torch

from torchtune_lite._torchao import NF4Tensor
from torchtune_lite.models.llama2 import llama2, lora_llama2
from torchtune_lite.modules.peft import (
    LoRALinear,
    get_adapter_params,
    get_adapter_state_dict,
    is_adapter_key,
    lora_scale,
    merge_lora_weight,
    set_trainable_params,
)
from torchtune_lite.quantization import dequantize_nf4, quantize_nf4
from torchtune_lite.training.weight_loading import load_weights_streaming

MODEL = dict(vocab_size=64, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=32, intermediate_dim=48,
             max_seq_len=32, norm_eps=1e-5)
RANK, ALPHA = 4, 8.0


def lora_model(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    model = lora_llama2(["q_proj", "v_proj", "output_proj"], True, False, lora_rank=RANK, lora_alpha=ALPHA,
                        **MODEL, **kwargs).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_b" in name:
                param.normal_(std=0.1)
    return model


def test_adapter_params_and_trainable():
    model = lora_model()
    adapters = get_adapter_params(model)
    # per layer: 3 attention + 3 mlp LoRA'd linears, 2 adapter matrices each
    assert len(adapters) == MODEL["num_layers"] * 6 * 2
    assert "layers.1.attn.q_proj.lora_a.weight" in adapters and "layers.0.mlp.w2.lora_b.weight" in adapters
    set_trainable_params(model, adapters)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(adapters)


def test_adapter_state_dict_has_only_lora_keys_on_cpu():
    state = lora_model().state_dict()
    adapter = get_adapter_state_dict(state)
    assert set(adapter) == {k for k in state if ".lora_a." in k or ".lora_b." in k}
    assert set(adapter) == {k for k in state if is_adapter_key(k)}
    assert all(v.device.type == "cpu" for v in adapter.values())


def merged_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The merge a save or an inference load does, layer by layer: each LoRA'd weight becomes
    W + (alpha / rank) * B @ A and the adapter keys go."""
    state = {key: value for key, value in model.state_dict().items() if not is_adapter_key(key)}
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            scale = lora_scale(module.rank, module.alpha)
            state[f"{name}.weight"] = merge_lora_weight(module.weight, module.lora_a.weight, module.lora_b.weight, scale)
    return state


def test_merged_checkpoint_loads_into_plain_model_with_same_logits():
    model = lora_model()
    merged = merged_state_dict(model)
    assert not any("lora" in k for k in merged)
    plain = llama2(**MODEL).eval()
    plain.load_state_dict(merged)  # strict: exactly the plain model's keys
    tokens = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(plain(tokens), model(tokens), rtol=1e-5, atol=1e-5)


def test_merge_dequantizes_nf4_base_and_keeps_dtype():
    torch.manual_seed(0)
    base = torch.randn(64, 256, dtype=torch.bfloat16)
    nf4 = quantize_nf4(base)
    a, b = torch.randn(2, 256, dtype=torch.bfloat16), torch.randn(64, 2, dtype=torch.bfloat16)
    merged = merge_lora_weight(nf4, a, b, lora_scale(2, 4.0))
    assert not isinstance(merged, NF4Tensor)
    assert merged.dtype == torch.bfloat16
    expected = (dequantize_nf4(nf4).float() + 2.0 * b.float() @ a.float()).to(torch.bfloat16)
    torch.testing.assert_close(merged, expected, rtol=0, atol=0)


def test_lora_keys_are_checked_when_loading_base_and_adapter():
    model = lora_model()
    base_state = llama2(**MODEL).state_dict()
    adapter_state = get_adapter_state_dict(model.state_dict())
    # The base checkpoint may miss only the adapters; the adapter checkpoint only base weights.
    load_weights_streaming(model, base_state.items(), source="base", may_be_missing=is_adapter_key)
    load_weights_streaming(model, adapter_state.items(), source="adapter", may_be_missing=lambda k: not is_adapter_key(k))
    without_k = {k: v for k, v in base_state.items() if k != "layers.0.attn.k_proj.weight"}
    with pytest.raises(ValueError, match="layers.0.attn.k_proj.weight"):
        load_weights_streaming(model, without_k.items(), source="base", may_be_missing=is_adapter_key)
    # the adapter adapts v_proj but the model (its lora_attn_modules) does not: its adapter keys are unexplained
    no_v = lora_llama2(["q_proj", "output_proj"], True, False, lora_rank=RANK, lora_alpha=ALPHA, **MODEL)
    with pytest.raises(ValueError, match="layers.0.attn.v_proj.lora_a.weight"):
        load_weights_streaming(no_v, adapter_state.items(), source="adapter", may_be_missing=lambda k: not is_adapter_key(k))


def test_qlora_backward_reaches_only_adapters():
    torch.manual_seed(0)
    model = lora_llama2(["q_proj", "v_proj"], True, False, lora_rank=RANK, lora_alpha=ALPHA, quantize_base=True,
                        **{**MODEL, "embed_dim": 128, "intermediate_dim": 256})
    adapters = get_adapter_params(model)
    set_trainable_params(model, adapters)
    model(torch.randint(0, 64, (2, 6))).logsumexp(-1).mean().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == set(adapters)


def test_merge_lora_weight_by_row_blocks_equals_one_full_fp32_addmm_and_leaves_base_alone():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(300, 96, generator=g).to(torch.bfloat16)  # more rows than one merge block
    before = base.clone()
    a, b = torch.randn(4, 96, generator=g), torch.randn(300, 4, generator=g)
    merged = merge_lora_weight(base, a, b, scale=0.37)
    expected = torch.addmm(base.float(), b, a, alpha=0.37).to(torch.bfloat16)
    assert merged.dtype == torch.bfloat16 and torch.equal(merged, expected)
    assert torch.equal(base, before) and merged.data_ptr() != base.data_ptr()
