"""The NF4 cache: a quantized base saved once and reloaded bit for bit, keyed by checkpoint files and config."""

from __future__ import annotations

import os

import pytest
import torch

from torchtune_lite._torchao import NF4Tensor
from torchtune_lite.checkpointing.nf4_cache import CACHE_FORMAT, nf4_cache_path
from torchtune_lite.models.llama2 import qlora_llama2
from torchtune_lite.modules.peft import is_adapter_key
from torchtune_lite.training.precision import set_default_dtype
from torchtune_lite.training.weight_loading import load_weights_streaming, load_weights_with_nf4_cache

FIELDS = ("quantized_data", "quantized_scalers", "quantization_factor", "scaler_mean", "nf4")


def tiny_qlora(dtype: torch.dtype, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)  # a different seed per model: the cache must overwrite every random base value
    with set_default_dtype(dtype):
        return qlora_llama2(
            ["q_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True, lora_rank=4, lora_alpha=8, vocab_size=128,
            num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64, max_seq_len=32, intermediate_dim=128,
        )  # fmt: skip


def checkpoint_for(model: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    return {
        k: (0.05 * torch.randn(p.shape, generator=g)).to(dtype)
        for k, p in model.named_parameters()
        if not is_adapter_key(k)
    }


def assert_same_base(a: torch.nn.Module, b: torch.nn.Module) -> int:
    """Every non-LoRA parameter equal bit for bit (NF4: all fields and block sizes); returns the NF4 count."""
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    n_nf4 = 0
    for key in pa:
        if is_adapter_key(key):
            continue
        x, y = pa[key].detach(), pb[key].detach()
        assert type(x) is type(y) and x.shape == y.shape and x.dtype == y.dtype, key
        if isinstance(x, NF4Tensor):
            n_nf4 += 1
            assert (x.block_size, x.scaler_block_size, x.n_blocks) == (y.block_size, y.scaler_block_size, y.n_blocks), key
            for field in FIELDS:
                fx, fy = getattr(x, field), getattr(y, field)
                assert fx.dtype == fy.dtype and torch.equal(fx, fy), f"{key}.{field}"
        else:
            assert torch.equal(x, y), key
    return n_nf4


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_cache_roundtrip_is_bit_identical_to_fresh_quantization(tmp_path, dtype):
    fresh = tiny_qlora(dtype, seed=0)
    ckpt = checkpoint_for(fresh, dtype)
    load_weights_streaming(fresh, ckpt.items(), source="ckpt", may_be_missing=is_adapter_key)

    cache = tmp_path / "cache" / "nf4-test.safetensors"
    miss = tiny_qlora(dtype, seed=1)
    assert not load_weights_with_nf4_cache(miss, lambda: iter(ckpt.items()), cache, source="ckpt", may_be_missing=is_adapter_key)
    assert cache.is_file()

    def no_checkpoint():
        raise AssertionError("a cache hit must not read the checkpoint")

    hit = tiny_qlora(dtype, seed=2)
    assert load_weights_with_nf4_cache(hit, no_checkpoint, cache, source="ckpt", may_be_missing=is_adapter_key)
    assert assert_same_base(miss, fresh) == assert_same_base(hit, fresh) == 2 * 6  # q, v, output_proj, w1, w2, w3 in each layer
    x = torch.randint(0, 128, (2, 8))
    with torch.no_grad():
        assert torch.equal(hit(x), tiny_qlora_logits(fresh, hit, x))


def tiny_qlora_logits(fresh: torch.nn.Module, hit: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`fresh`'s logits with `hit`'s adapters (the adapters are not part of the cache)."""
    fresh.load_state_dict({k: v for k, v in hit.state_dict().items() if is_adapter_key(k)}, strict=False)
    return fresh(x)


def test_cache_key_follows_checkpoint_files_and_config(tmp_path):
    shard = tmp_path / "model.safetensors"
    shard.write_bytes(b"x" * 10)
    first = nf4_cache_path(tmp_path / "c", [shard], {"model": {"lora_rank": 8}, "dtype": "torch.bfloat16"})
    assert first == nf4_cache_path(tmp_path / "c", [shard], {"dtype": "torch.bfloat16", "model": {"lora_rank": 8}})
    assert first.parent == tmp_path / "c" and first.name.startswith("nf4-")
    assert first != nf4_cache_path(tmp_path / "c", [shard], {"model": {"lora_rank": 16}, "dtype": "torch.bfloat16"})
    assert first != nf4_cache_path(tmp_path / "c", [shard], {"model": {"lora_rank": 8}, "dtype": "torch.float32"})
    os.utime(shard, ns=(0, 123_456_789))  # same size, different modification time: re-downloaded or edited
    assert first != nf4_cache_path(tmp_path / "c", [shard], {"model": {"lora_rank": 8}, "dtype": "torch.bfloat16"})


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_unusable_cache_is_rebuilt_from_the_checkpoint(tmp_path, damage):
    from safetensors.torch import save_file

    fresh = tiny_qlora(torch.bfloat16, seed=0)
    ckpt = checkpoint_for(fresh, torch.bfloat16)
    load_weights_streaming(fresh, ckpt.items(), source="ckpt", may_be_missing=is_adapter_key)
    cache = tmp_path / "nf4-x.safetensors"
    if damage == "truncated":
        load_weights_with_nf4_cache(tiny_qlora(torch.bfloat16, 1), lambda: iter(ckpt.items()), cache, source="ckpt", may_be_missing=is_adapter_key)
        cache.write_bytes(cache.read_bytes()[:1000])
    else:  # a safetensors file, but not one of ours
        save_file({"w": torch.zeros(2)}, str(cache), metadata={"format": "pt"})
    model = tiny_qlora(torch.bfloat16, seed=2)
    assert not load_weights_with_nf4_cache(model, lambda: iter(ckpt.items()), cache, source="ckpt", may_be_missing=is_adapter_key)
    assert_same_base(model, fresh)
    from safetensors import safe_open

    with safe_open(str(cache), framework="pt") as f:
        assert f.metadata()["format"] == CACHE_FORMAT
