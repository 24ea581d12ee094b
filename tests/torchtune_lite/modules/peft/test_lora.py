import contextlib
import warnings

import peft
import pytest
import torch
import torch.nn.functional as F

from torchtune_lite._torchao import NF4Tensor
from torchtune_lite.models.llama2 import llama2, lora_llama2
from torchtune_lite.modules.peft import LoRALinear, get_adapter_params
from torchtune_lite.quantization import dequantize_nf4


def param_bytes(module: torch.nn.Module) -> int:
    total = 0
    for param in module.parameters():
        if isinstance(param, NF4Tensor):
            inner_names, _ = param.__tensor_flatten__()
            total += sum(getattr(param, n).numel() * getattr(param, n).element_size() for n in inner_names)
        else:
            total += param.numel() * param.element_size()
    return total


def test_output_is_base_plus_scaled_adapter():
    torch.manual_seed(0)
    layer = LoRALinear(8, 6, rank=2, alpha=3.0, use_bias=True)
    with torch.no_grad():
        layer.lora_b.weight.normal_()
        layer.bias.normal_()
    x = torch.randn(3, 4, 8)
    expected = x @ layer.weight.T + layer.bias + 1.5 * (x @ layer.lora_a.weight.T @ layer.lora_b.weight.T)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)


def test_init_and_trainable_parts():
    torch.manual_seed(0)
    layer = LoRALinear(16, 12, rank=4, alpha=8.0)
    assert torch.count_nonzero(layer.lora_b.weight) == 0
    bound = 1 / 16**0.5  # kaiming_uniform(a=sqrt(5)) on fan_in=16
    assert layer.lora_a.weight.abs().max() <= bound and layer.lora_a.weight.std() > bound / 4
    assert not layer.weight.requires_grad
    assert set(get_adapter_params(layer)) == {"lora_a.weight", "lora_b.weight"}
    assert set(layer.state_dict()) == {"weight", "lora_a.weight", "lora_b.weight"}


def test_qlora_forward_matches_dequantized_base_and_trains_adapters():
    torch.manual_seed(0)
    layer = LoRALinear(128, 128, rank=4, alpha=8.0, quantize_base=True)
    assert isinstance(layer.weight, NF4Tensor) and layer.quantize_base
    with torch.no_grad():
        layer.lora_b.weight.normal_()
    x = torch.randn(2, 5, 128, requires_grad=True)
    out = layer(x)
    # The reference: plain F.linear on the dequantized base, with independent copies of the adapters.
    base = dequantize_nf4(layer.weight)
    x_ref = x.detach().clone().requires_grad_(True)
    a_ref = layer.lora_a.weight.detach().clone().requires_grad_(True)
    b_ref = layer.lora_b.weight.detach().clone().requires_grad_(True)
    expected = F.linear(x_ref, base) + 2.0 * F.linear(F.linear(x_ref, a_ref), b_ref)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    expected.backward(grad_out)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.lora_a.weight.grad, a_ref.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.lora_b.weight.grad, b_ref.grad, rtol=1e-5, atol=1e-5)
    assert layer.lora_a.weight.grad.abs().max() > 0  # not trivially zero (lora_b is nonzero)
    assert layer.weight.grad is None


def _weight_reads_plain_then_checkpointed(first, last, x, reads: list, read_of, context=contextlib.nullcontext):
    """Runs the block `x + last(gelu(first(x)))` forward and backward plainly, then under non-reentrant
    activation checkpointing; checks both give identical gradients and returns, per run, how many entries of
    `reads` (filled during the run) `read_of(entry, layer)` assigns to each layer's weight."""
    from torch.utils.checkpoint import checkpoint

    def block(x):
        return x + last(F.gelu(first(x)))

    grads, counts = [], []
    for run in (block, lambda x: checkpoint(block, x, use_reentrant=False)):
        reads.clear()
        xi = x.clone().requires_grad_(True)
        with context():
            run(xi).square().sum().backward()
        trained = [p for p in (*first.parameters(), *last.parameters()) if p.requires_grad]
        grads.append([xi.grad] + [p.grad.clone() for p in trained])
        for p in trained:
            p.grad = None
        counts.append([sum(read_of(entry, layer) for entry in reads) for layer in (first, last)])
    for plain, checkpointed in zip(*grads):
        assert torch.equal(plain, checkpointed)
    return counts


def test_checkpointed_block_recomputes_all_but_its_last_nf4_matmul(monkeypatch):
    # A checkpointed block whose last op is a QLoRA layer: its recompute stops once every saved tensor is
    # back, before that layer's base matmul, so the last weight is dequantized twice (forward, backward),
    # the first three times; gradients equal the uncheckpointed block's.
    from torchtune_lite.quantization import nf4_kernels

    torch.manual_seed(0)
    first, last = (LoRALinear(128, 128, rank=4, alpha=8.0, quantize_base=True) for _ in range(2))
    for layer in (first, last):
        with torch.no_grad():
            layer.lora_b.weight.normal_()
    dequantized = []
    real = nf4_kernels._dequantize_scratch
    monkeypatch.setattr(nf4_kernels, "_dequantize_scratch", lambda w: dequantized.append(w) or real(w))
    x = torch.randn(2, 5, 128)  # 10 tokens < 128: backward dequantizes again (no kept dense weight)
    counts = _weight_reads_plain_then_checkpointed(first, last, x, dequantized, lambda w, layer: w is layer.weight)
    assert counts == [[2, 2], [3, 2]]


def test_checkpointed_block_recomputes_all_but_its_last_dense_matmul():
    # The same with dense frozen bases (LoRA): the base GEMMs reading each weight, counted at dispatch, are
    # [3, 2] under checkpoint: torch's own addmm on a frozen weight already lets the recompute stop (no custom
    # Function needed, unlike NF4's); the test keeps it so. Gradients equal the plain block's.
    from torch.utils._python_dispatch import TorchDispatchMode

    torch.manual_seed(0)
    first, last = (LoRALinear(64, 64, rank=4, alpha=8.0) for _ in range(2))
    for layer in (first, last):
        layer.weight.requires_grad_(False)
        with torch.no_grad():
            layer.lora_b.weight.normal_()
    weights = [first.weight.data_ptr(), last.weight.data_ptr()]
    reads = []

    class CountWeightReads(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm):
                reads.extend(t.data_ptr() for t in args if isinstance(t, torch.Tensor) and t.data_ptr() in weights)
            return func(*args, **(kwargs or {}))

    counts = _weight_reads_plain_then_checkpointed(
        first, last, torch.randn(2, 5, 64), reads, lambda ptr, layer: ptr == layer.weight.data_ptr(), CountWeightReads
    )
    assert counts == [[2, 2], [3, 2]]


def test_qlora_holds_at_most_a_fifth_of_the_bytes():
    torch.manual_seed(0)
    plain = LoRALinear(512, 512, rank=8, alpha=0.1)
    quantized = LoRALinear(512, 512, rank=8, alpha=0.1, quantize_base=True)
    assert param_bytes(plain) == 1_081_344
    assert param_bytes(quantized) * 5 <= param_bytes(plain)


def test_odd_shape_works_with_at_most_one_warning():
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layer = LoRALinear(100, 30, rank=2, alpha=4.0, quantize_base=True)
    x = torch.randn(3, 100)
    out = layer(x)
    assert out.shape == (3, 30)
    if layer.quantize_base:
        assert not caught
        torch.testing.assert_close(out, F.linear(x, dequantize_nf4(layer.weight)), rtol=1e-5, atol=1e-5)
    else:
        assert len(caught) == 1 and "100 -> 30" in str(caught[0].message)
        torch.testing.assert_close(out, F.linear(x, layer.weight), rtol=1e-5, atol=1e-5)


def test_bad_rank_is_a_clear_error():
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(4, 4, rank=0, alpha=1.0)


MODEL = dict(vocab_size=64, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=32, intermediate_dim=48,
             max_seq_len=32, norm_eps=1e-5)


def test_lora_model_equals_base_model_at_init():
    torch.manual_seed(0)
    base = llama2(**MODEL).eval()
    lora = lora_llama2(["q_proj", "k_proj", "v_proj", "output_proj"], True, True, lora_rank=4, lora_alpha=8, **MODEL)
    missing, unexpected = lora.eval().load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(".lora_" in k for k in missing)
    tokens = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(lora(tokens), base(tokens), rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers deprecation inside peft
def test_matches_peft_lora_on_hf_llama(hf_model, num_kv_heads, tiny, convert_hf_state_dict, hf_qk_to_meta):
    rank, alpha, n_heads = 4, 8.0, tiny["num_heads"]
    base_state = convert_hf_state_dict(hf_model.state_dict(), n_heads, num_kv_heads)
    peft_model = peft.get_peft_model(
        hf_model, peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    ).eval()
    ours = lora_llama2(["q_proj", "v_proj"], num_kv_heads=num_kv_heads, lora_rank=rank, lora_alpha=alpha, **tiny)
    ours.load_state_dict(base_state, strict=False)
    torch.manual_seed(1)
    with torch.no_grad():
        for i in range(tiny["num_layers"]):
            for name in ("q_proj", "v_proj"):
                hf_layer = getattr(peft_model.base_model.model.model.layers[i].self_attn, name)
                hf_layer.lora_B["default"].weight.normal_()  # peft also starts B at zero
                lora_a, lora_b = hf_layer.lora_A["default"].weight, hf_layer.lora_B["default"].weight
                ours_layer = getattr(ours.layers[i].attn, name)
                ours_layer.lora_a.weight.copy_(lora_a)
                # B's rows are q_proj output features, stored in HF's rotate-half order
                ours_layer.lora_b.weight.copy_(hf_qk_to_meta(lora_b, n_heads) if name == "q_proj" else lora_b)
    tokens = torch.randint(0, tiny["vocab_size"], (2, 9))
    with torch.no_grad():
        expected = peft_model(input_ids=tokens).logits
        actual = ours.eval()(tokens)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_adapter_key_test_and_model_adapter_config_come_from_the_layers():
    from torchtune_lite.models.llama2 import lora_llama2
    from torchtune_lite.modules.peft import is_adapter_key, model_adapter_config

    assert is_adapter_key("layers.0.attn.q_proj.lora_a.weight") and is_adapter_key("output.lora_b.weight")
    assert not is_adapter_key("layers.0.attn.q_proj.weight") and not is_adapter_key("lora_a_weight")
    model = lora_llama2(["q_proj", "v_proj"], apply_lora_to_mlp=False, apply_lora_to_output=True, lora_rank=4,
                        lora_alpha=8.0, lora_dropout=0.1, vocab_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                        embed_dim=32, intermediate_dim=48, max_seq_len=32)
    assert model_adapter_config(model) == {"r": 4, "lora_alpha": 8.0, "lora_dropout": 0.1,
                                           "target_modules": ["output", "q_proj", "v_proj"]}
    model.layers[1].attn.q_proj.alpha = 16.0  # a layer that disagrees: PEFT's one config cannot describe it
    with pytest.raises(ValueError, match="differ"):
        model_adapter_config(model)
