from __future__ import annotations

import json

import pytest
import torch
import transformers

from torchtune_lite._torchao import to_nf4
from torchtune_lite.checkpointing import FullModelHFCheckpointer
from torchtune_lite.checkpointing._convert_weights import hf_to_interleaved, interleaved_to_hf



def _our_model(t, num_kv_heads: int) -> torch.nn.Module:
    try:
        from torchtune_lite.models.llama2 import llama2
    except ImportError as err:
        pytest.skip(f"torchtune_lite.models.llama2.llama2 not importable yet: {err}")
    torch.manual_seed(0)
    return llama2(vocab_size=t.VOCAB, num_layers=t.LAYERS, num_heads=t.HEADS, num_kv_heads=num_kv_heads,
                  embed_dim=t.DIM, max_seq_len=64, intermediate_dim=t.HIDDEN, norm_eps=1e-6).eval()


def test_permutation_round_trips_and_moves_rows():
    w = torch.arange(16 * 3.0).reshape(16, 3)
    hf = interleaved_to_hf(w, n_heads=2)
    # head 0 rows 0..7 interleaved (0,1),(2,3).. -> HF halves [0,2,4,6,1,3,5,7]
    assert hf[:8, 0].tolist() == [0.0, 6.0, 12.0, 18.0, 3.0, 9.0, 15.0, 21.0]
    assert torch.equal(hf_to_interleaved(hf, n_heads=2), w)


@pytest.mark.parametrize("variant", ["single", "sharded", "bin"])
def test_load_matches_hf_logits(hf_tools, tmp_path, num_kv_heads, tokens, variant):
    hf = hf_tools.tiny_hf_model(num_kv_heads)
    kwargs = {"single": {}, "sharded": {"max_shard_size": "20KB"}, "bin": {"bin": True}}[variant]
    src = hf_tools.save_hf(hf, tmp_path / "hf", **kwargs)
    expected_file = {"single": "model.safetensors", "sharded": "model.safetensors.index.json", "bin": "pytorch_model.bin"}
    assert (src / expected_file[variant]).is_file()
    ckpt = FullModelHFCheckpointer(src, None, "LLAMA2", tmp_path / "out")
    sd = dict(ckpt.iter_model())
    assert set(sd) == set(ckpt.shape.expected_shapes())
    assert torch.equal(sd["layers.1.mlp.w2.weight"], hf.model.layers[1].mlp.down_proj.weight)
    model = _our_model(hf_tools, num_kv_heads)
    model.load_state_dict(sd)
    with torch.no_grad():
        ours = model(tokens)
    torch.testing.assert_close(ours, hf_tools.hf_logits(hf, tokens), atol=1e-5, rtol=1e-5)


def test_save_loads_in_transformers_and_round_trips_bitwise(hf_tools, tmp_path, num_kv_heads, tokens):
    hf = hf_tools.tiny_hf_model(num_kv_heads)
    src = hf_tools.save_hf(hf, tmp_path / "hf")
    ckpt = FullModelHFCheckpointer(src, ["model.safetensors"], "LLAMA2", tmp_path / "out", max_shard_size=20_000)
    sd = dict(ckpt.iter_model())
    out = ckpt.save_checkpoint({"model": sd}, epoch=0)
    assert out == tmp_path / "out" / "epoch_0"
    shards = sorted(p.name for p in out.glob("model-*.safetensors"))
    assert len(shards) > 1 and shards[-1].endswith(f"-of-{len(shards):05d}.safetensors")
    assert (out / "config.json").is_file() and (out / "model.safetensors.index.json").is_file()
    reloaded_hf = transformers.LlamaForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    torch.testing.assert_close(hf_tools.hf_logits(reloaded_hf, tokens), hf_tools.hf_logits(hf, tokens), atol=0, rtol=0)
    again = dict(FullModelHFCheckpointer(out, None, "LLAMA2", tmp_path / "out2").iter_model())
    assert set(again) == set(sd) and all(torch.equal(again[k], sd[k]) for k in sd)


def test_filename_format_dict_and_bf16_kept(hf_tools, tmp_path):
    hf = hf_tools.tiny_hf_model().to(torch.bfloat16)
    src = hf_tools.save_hf(hf, tmp_path / "hf", max_shard_size="20KB")
    n = len(list(src.glob("model-*.safetensors")))
    files = {"filename_format": "model-{}-of-{}.safetensors", "max_filename": f"{n:05d}"}
    sd = dict(FullModelHFCheckpointer(src, files, "LLAMA2", tmp_path / "out").iter_model())
    assert sd["tok_embeddings.weight"].dtype == torch.bfloat16
    assert torch.equal(sd["norm.scale"], hf.model.norm.weight)


def test_tied_embeddings_load_and_save(hf_tools, tmp_path, tokens):
    hf = hf_tools.tiny_hf_model(tie=True)
    src = hf_tools.save_hf(hf, tmp_path / "hf")
    ckpt = FullModelHFCheckpointer(src, None, "LLAMA2", tmp_path / "out")
    sd = dict(ckpt.iter_model())
    assert torch.equal(sd["output.weight"], sd["tok_embeddings.weight"])
    out = ckpt.save_checkpoint({"model": sd}, epoch=1)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert "lm_head.weight" not in index["weight_map"]
    reloaded = transformers.LlamaForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    torch.testing.assert_close(hf_tools.hf_logits(reloaded, tokens), hf_tools.hf_logits(hf, tokens), atol=0, rtol=0)


def test_nf4_values_are_dequantized_on_save(hf_tools, tmp_path):
    hf = hf_tools.tiny_hf_model()
    src = hf_tools.save_hf(hf, tmp_path / "hf")
    ckpt = FullModelHFCheckpointer(src, None, "LLAMA2", tmp_path / "out")
    sd = dict(ckpt.iter_model())
    key = "layers.0.mlp.w1.weight"  # [48, 32]: 1536 elements = 24 blocks of 64, 6 scaler blocks of 4
    sd[key] = to_nf4(sd[key].to(torch.bfloat16), 64, 4)
    expected = sd[key].get_original_weight()
    out = ckpt.save_checkpoint({"model": sd}, epoch=0)
    again = dict(FullModelHFCheckpointer(out, None, "LLAMA2", tmp_path / "o2").iter_model())
    assert again[key].dtype == torch.bfloat16 and torch.equal(again[key], expected)


def test_bin_output_when_safe_serialization_off(hf_tools, tmp_path, tokens):
    hf = hf_tools.tiny_hf_model()
    src = hf_tools.save_hf(hf, tmp_path / "hf")
    ckpt = FullModelHFCheckpointer(src, None, "LLAMA2", tmp_path / "out", safe_serialization=False)
    out = ckpt.save_checkpoint({"model": dict(ckpt.iter_model())}, epoch=0)
    assert (out / "pytorch_model.bin.index.json").is_file()
    reloaded = transformers.LlamaForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    torch.testing.assert_close(hf_tools.hf_logits(reloaded, tokens), hf_tools.hf_logits(hf, tokens), atol=0, rtol=0)
