"""Gemma-2/3 specifics beyond the shared family parity tests (test_from_pretrained.py): every Gemma feature
moves the logits on the tiny test models (so the parity tests would catch it missing), and the sliding
window holds on packed sequences."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from torchtune_lite.models._decoder import build_decoder
from torchtune_lite.models._hf_config import UnsupportedModelConfigError, decoder_args_from_hf_config, read_hf_config
from torchtune_lite.checkpointing import FullModelHFCheckpointer

from tests.torchtune_lite.models.hf_families import VOCAB, hf_logits, save_tiny_hf


def _build(src, out, **changes) -> torch.nn.Module:
    args = dataclasses.replace(decoder_args_from_hf_config(read_hf_config(src)), **changes)
    model = build_decoder(args).eval()
    model.load_state_dict(dict(FullModelHFCheckpointer(src, None, "GEMMA2", out).iter_model()))
    return model


ALL_FULL = ("full_attention", "full_attention")
WITHOUT = {
    "gemma2": {"attn_softcap": None, "final_logit_softcap": None, "layer_types": ALL_FULL, "query_pre_attn_scalar": None,
               "scale_embeddings": False, "hidden_activation": "silu"},
    "gemma3": {"rope_local_base": None, "rope_scaling": None, "layer_types": ALL_FULL, "query_pre_attn_scalar": None},
}


@pytest.mark.parametrize("family, feature", [(f, k) for f, d in WITHOUT.items() for k in d])
def test_each_feature_changes_the_logits(family, feature, tmp_path):
    hf, src = save_tiny_hf(family, tmp_path / "hf")
    tokens = torch.randint(0, VOCAB, (1, 24), generator=torch.Generator().manual_seed(1))
    reference = hf_logits(hf, tokens)
    with torch.no_grad():
        torch.testing.assert_close(_build(src, tmp_path / "o")(tokens), reference, atol=1e-4, rtol=1e-4)
        without = _build(src, tmp_path / "o", **{feature: WITHOUT[family][feature]})(tokens)
    assert (without - reference).abs().max() > 1e-3, f"{feature} does not bind on the test model"


def test_sliding_window_on_packed_samples_equals_each_alone(tmp_path):
    """Two samples packed in one row (block-diagonal mask, positions restarting) give each sample's own logits."""
    _, src = save_tiny_hf("gemma2", tmp_path / "hf")
    model = _build(src, tmp_path / "o")
    gen = torch.Generator().manual_seed(2)
    first, second = torch.randint(0, VOCAB, (1, 20), generator=gen), torch.randint(0, VOCAB, (1, 14), generator=gen)
    packed = torch.cat([first, second], dim=1)
    mask = torch.block_diag(torch.ones(20, 20), torch.ones(14, 14)).bool().tril()[None]
    input_pos = torch.cat([torch.arange(20), torch.arange(14)])[None]
    with torch.no_grad():
        together = model(packed, mask=mask, input_pos=input_pos)
        torch.testing.assert_close(together[:, :20], model(first), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(together[:, 20:], model(second), atol=1e-5, rtol=1e-5)


def test_gemma_configs_old_and_unsupported(tmp_path):
    _, src = save_tiny_hf("gemma3", tmp_path / "hf")
    config = read_hf_config(src)
    multimodal = {"architectures": ["Gemma3ForConditionalGeneration"], "text_config": config}
    with pytest.raises(UnsupportedModelConfigError, match="Gemma3ForConditionalGeneration.*text-only Gemma3ForCausalLM"):
        decoder_args_from_hf_config(multimodal)
    with pytest.raises(UnsupportedModelConfigError, match="hidden_activation 'gelu'.*gelu_pytorch_tanh"):
        decoder_args_from_hf_config({**config, "hidden_activation": "gelu"})
    with pytest.raises(UnsupportedModelConfigError, match="use_bidirectional_attention"):
        decoder_args_from_hf_config({**config, "use_bidirectional_attention": True})
    # configs written before transformers 5: rope_theta / rope_local_base_freq / rope_scaling and no layer_types
    old = {k: v for k, v in config.items() if k not in ("rope_parameters", "layer_types")}
    old.update(rope_theta=1e6, rope_local_base_freq=10_000.0, rope_scaling={"rope_type": "linear", "factor": 8.0},
               sliding_window_pattern=2)
    assert decoder_args_from_hf_config(old) == decoder_args_from_hf_config(config)
