import warnings

import pytest
import torch

from torchtune_lite._torchao import NF4Tensor
from torchtune_lite.models.llama2 import (
    llama2,
    llama2_7b,
    llama2_13b,
    llama2_70b,
    lora_llama2,
    qlora_llama2,
    qlora_llama2_7b,
    scale_hidden_dim_for_mlp,
)
from torchtune_lite.modules.peft import LoRALinear

SMALL = dict(vocab_size=64, num_layers=2, num_heads=4, num_kv_heads=4, embed_dim=128, intermediate_dim=256,
             max_seq_len=16)


def test_llama_feed_forward_rule():
    assert scale_hidden_dim_for_mlp(4096) == 11008
    assert scale_hidden_dim_for_mlp(5120) == 13824
    assert llama2(**{**SMALL, "intermediate_dim": None}).layers[0].mlp.w1.weight.shape == (512, 128)


@pytest.mark.parametrize(
    "builder, num_params",
    # published parameter counts of the Meta/HF checkpoints
    [(llama2_7b, 6_738_415_616), (llama2_13b, 13_015_864_320), (llama2_70b, 68_976_648_192)],
)
def test_published_sizes_on_meta_device(builder, num_params):
    with torch.device("meta"):
        model = builder()
    assert sum(p.numel() for p in model.parameters()) == num_params


def test_keys_follow_the_contract():
    keys = set(llama2(**SMALL).state_dict())
    layer0 = {k for k in keys if k.startswith("layers.0.")}
    assert layer0 == {
        f"layers.0.{name}"
        for name in ("sa_norm.scale", "mlp_norm.scale", "attn.q_proj.weight", "attn.k_proj.weight",
                     "attn.v_proj.weight", "attn.output_proj.weight", "mlp.w1.weight", "mlp.w2.weight",
                     "mlp.w3.weight")
    }
    assert {"tok_embeddings.weight", "norm.scale", "output.weight"} <= keys


def test_bad_lora_attn_modules_named_in_error():
    with pytest.raises(ValueError, match=r"\['q', 'mlp'\]"):
        lora_llama2(["q", "v_proj", "mlp"], lora_rank=2, lora_alpha=4, **SMALL)
    with pytest.raises(ValueError, match="must be a list"):
        lora_llama2("q_proj", lora_rank=2, lora_alpha=4, **SMALL)


def test_only_lora_linears_are_quantized():
    model = qlora_llama2(["q_proj", "v_proj"], lora_rank=2, lora_alpha=4, **SMALL)
    attn, mlp = model.layers[0].attn, model.layers[0].mlp
    assert isinstance(attn.q_proj, LoRALinear) and isinstance(attn.q_proj.weight, NF4Tensor)
    assert isinstance(attn.v_proj.weight, NF4Tensor)
    for plain in (attn.k_proj.weight, attn.output_proj.weight, mlp.w1.weight, model.output.weight):
        assert type(plain) is torch.nn.Parameter


def test_builds_in_default_dtype():
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        model = qlora_llama2(["q_proj"], apply_lora_to_mlp=True, lora_rank=2, lora_alpha=4, **SMALL)
    finally:
        torch.set_default_dtype(saved)
    assert model.layers[0].attn.q_proj.weight.dtype == torch.bfloat16  # NF4 remembers its original dtype
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert model.layers[0].attn.pos_embeddings.cache.dtype == torch.float32
    logits = model(torch.randint(0, 64, (1, 5)))
    assert logits.dtype == torch.bfloat16
    assert all(v.dtype == torch.bfloat16 and not isinstance(v, NF4Tensor) for v in model.state_dict().values())


def test_odd_shapes_warn_once_naming_layers():
    odd = dict(vocab_size=30, num_layers=2, num_heads=2, num_kv_heads=1, embed_dim=20, intermediate_dim=36,
               max_seq_len=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = qlora_llama2(["q_proj", "k_proj"], True, True, lora_rank=2, lora_alpha=4, **odd)
    unquantized = [n for n, m in model.named_modules() if isinstance(m, LoRALinear) and not m.quantize_base]
    assert len(caught) == (1 if unquantized else 0)
    for name in unquantized:
        assert name in str(caught[0].message)
    assert model(torch.randint(0, 30, (1, 6))).shape == (1, 6, 30)


def test_qlora_7b_on_meta_device_quantizes_lora_linears():
    with torch.device("meta"):
        model = qlora_llama2_7b(["q_proj", "v_proj"])
    assert isinstance(model.layers[0].attn.q_proj.weight, NF4Tensor)
    assert type(model.layers[0].attn.k_proj.weight) is torch.nn.Parameter
