from __future__ import annotations

import functools
import json

import pytest
import torch

from torchtune_lite.checkpointing import CheckpointFormatError, FullModelHFCheckpointer, FullModelMetaCheckpointer
from torchtune_lite.models.llama2 import llama2
from torchtune_lite.training.model_from_checkpoint import build_model_from_checkpoint


def _meta_state_dict(hf_model, heads: int, kv_heads: int) -> dict[str, torch.Tensor]:
    """Meta's layout written out by hand from an HF model (undoing HF's rotate-half row order)."""
    def unpermute(w, n):
        return w.reshape(n, 2, w.shape[0] // n // 2, w.shape[1]).transpose(1, 2).reshape(w.shape).clone()

    sd = {"tok_embeddings.weight": hf_model.model.embed_tokens.weight, "norm.weight": hf_model.model.norm.weight,
          "output.weight": hf_model.lm_head.weight, "rope.freqs": torch.ones(4)}
    for i, layer in enumerate(hf_model.model.layers):
        a, f = layer.self_attn, layer.mlp
        sd.update({
            f"layers.{i}.attention.wq.weight": unpermute(a.q_proj.weight, heads),
            f"layers.{i}.attention.wk.weight": unpermute(a.k_proj.weight, kv_heads),
            f"layers.{i}.attention.wv.weight": a.v_proj.weight, f"layers.{i}.attention.wo.weight": a.o_proj.weight,
            f"layers.{i}.feed_forward.w1.weight": f.gate_proj.weight, f"layers.{i}.feed_forward.w2.weight": f.down_proj.weight,
            f"layers.{i}.feed_forward.w3.weight": f.up_proj.weight,
            f"layers.{i}.attention_norm.weight": layer.input_layernorm.weight,
            f"layers.{i}.ffn_norm.weight": layer.post_attention_layernorm.weight,
        })
    return {k: v.detach().clone() for k, v in sd.items()}


def _write_meta(path, sd, t, kv_heads, layers=None):
    path.mkdir()
    torch.save(sd, path / "consolidated.00.pth")
    params = {"dim": t.DIM, "n_layers": layers or t.LAYERS, "n_heads": t.HEADS, "n_kv_heads": kv_heads,
              "vocab_size": -1, "norm_eps": 1e-6, "multiple_of": 16}
    (path / "params.json").write_text(json.dumps(params))
    return path


def test_meta_load_equals_hf_load_and_round_trips(hf_tools, tmp_path, num_kv_heads):
    t = hf_tools
    hf = t.tiny_hf_model(num_kv_heads)
    meta_sd = _meta_state_dict(hf, t.HEADS, num_kv_heads)
    src = _write_meta(tmp_path / "meta", meta_sd, t, num_kv_heads)
    ckpt = FullModelMetaCheckpointer(src, ["consolidated.00.pth"], "LLAMA2", tmp_path / "out")
    ours = dict(ckpt.iter_model())
    via_hf = dict(FullModelHFCheckpointer(t.save_hf(hf, tmp_path / "hf"), None, "LLAMA2", tmp_path / "o").iter_model())
    assert set(ours) == set(via_hf) and all(torch.equal(ours[k], via_hf[k]) for k in ours)

    out = ckpt.save_checkpoint({"model": ours}, epoch=0)
    assert (out / "params.json").is_file()
    saved = torch.load(out / "consolidated.00.pth", weights_only=True)
    del meta_sd["rope.freqs"]  # a buffer the model rebuilds
    assert set(saved) == set(meta_sd) and all(torch.equal(saved[k], meta_sd[k]) for k in saved)


def test_meta_params_mismatch_is_reported(hf_tools, tmp_path):
    t = hf_tools
    sd = _meta_state_dict(t.tiny_hf_model(), t.HEADS, t.HEADS)
    src = _write_meta(tmp_path / "meta", sd, t, t.HEADS, layers=3)
    # the model params.json describes (3 layers) gets its weights the way every run loads them
    three_layers = functools.partial(llama2, vocab_size=t.VOCAB, num_layers=3, num_heads=t.HEADS, num_kv_heads=t.HEADS,
                                     embed_dim=t.DIM, max_seq_len=64, intermediate_dim=t.HIDDEN)
    with pytest.raises(CheckpointFormatError, match="lacks"):
        build_model_from_checkpoint(three_layers, FullModelMetaCheckpointer(src, None, "LLAMA2", tmp_path / "out"),
                                    device=torch.device("cpu"), dtype=torch.float32)


def test_meta_adapter_round_trip(hf_tools, tmp_path):
    t = hf_tools
    src = _write_meta(tmp_path / "meta", _meta_state_dict(t.tiny_hf_model(), t.HEADS, t.HEADS), t, t.HEADS)
    ckpt = FullModelMetaCheckpointer(src, None, "LLAMA2", tmp_path / "out")
    adapter = {"layers.0.attn.q_proj.lora_a.weight": torch.randn(2, t.DIM), "layers.0.attn.q_proj.lora_b.weight": torch.randn(t.DIM, 2)}
    out = ckpt.save_checkpoint({"adapter": adapter, "adapter_config": {"lora_alpha": 4}}, epoch=2)
    assert not (out / "consolidated.00.pth").exists()
    back = FullModelMetaCheckpointer(src, None, "LLAMA2", tmp_path / "o", adapter_checkpoint=out).load_checkpoint()["adapter"]
    assert all(torch.equal(back[k], adapter[k]) for k in adapter)
