import torch

from torchtune_lite._torchao import NF4Tensor
from torchtune_lite.models.llama2 import qlora_llama2
from torchtune_lite.modules.peft import reparametrize_as_dtype_state_dict_post_hook
from torchtune_lite.quantization import dequantize_nf4, quantize_nf4

# 128 x 128 weights fit NF4's default block sizes
MODEL = dict(vocab_size=64, num_layers=1, num_heads=4, num_kv_heads=4, embed_dim=128, intermediate_dim=256,
             max_seq_len=16, norm_eps=1e-5)


def qlora_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return qlora_llama2(["q_proj", "v_proj"], lora_rank=4, lora_alpha=8, **MODEL).eval()


def test_state_dict_is_plain_cpu_tensors_of_original_dtype():
    model = qlora_model(0)
    assert isinstance(model.layers[0].attn.q_proj.weight, NF4Tensor)
    state = model.state_dict()
    assert not any(isinstance(v, NF4Tensor) for v in state.values())
    assert all(v.device.type == "cpu" and v.dtype == torch.float32 for v in state.values())
    torch.testing.assert_close(
        state["layers.0.attn.q_proj.weight"], dequantize_nf4(model.layers[0].attn.q_proj.weight), rtol=0, atol=0
    )


def test_reload_into_fresh_qlora_model_requantizes_with_same_logits():
    source = qlora_model(0)
    with torch.no_grad():
        source.layers[0].attn.v_proj.lora_b.weight.normal_()
    target = qlora_model(1)
    target.load_state_dict(source.state_dict())
    for name in ("q_proj", "v_proj"):
        weight = getattr(target.layers[0].attn, name).weight
        source_weight = getattr(source.layers[0].attn, name).weight
        assert isinstance(weight, NF4Tensor) and not weight.requires_grad
        # re-quantizing dequantized NF4 values finds the same 4-bit codes; only the (double-quantized)
        # block scales can move by float rounding
        assert torch.equal(weight.quantized_data, source_weight.quantized_data)
        torch.testing.assert_close(dequantize_nf4(weight), dequantize_nf4(source_weight), rtol=1e-4, atol=1e-5)
    tokens = torch.randint(0, 64, (1, 8))
    with torch.no_grad():
        torch.testing.assert_close(target(tokens), source(tokens), rtol=1e-4, atol=1e-5)


def test_hook_casts_to_requested_dtype():
    nf4 = quantize_nf4(torch.randn(64, 256))
    other = torch.ones(3)
    state = {"a.weight": nf4, "b": other}
    reparametrize_as_dtype_state_dict_post_hook(torch.nn.Module(), state, "", {}, dtype=torch.bfloat16)
    assert state["b"] is other
    assert state["a.weight"].dtype == torch.bfloat16 and not isinstance(state["a.weight"], NF4Tensor)
    torch.testing.assert_close(state["a.weight"], dequantize_nf4(nf4).to(torch.bfloat16), rtol=0, atol=0)
