"""A user's broken or hostile checkpoint gives a one-line error naming the file and the fix."""

from __future__ import annotations

import functools
import json
import pathlib

import pytest
import torch
from safetensors.torch import load_file, save_file

from torchtune_lite.checkpointing import (
    CheckpointFormatError,
    CheckpointNotFoundError,
    FullModelHFCheckpointer,
    UnsafeCheckpointError,
    load_recipe_state,
)
from torchtune_lite.models import from_pretrained_config
from torchtune_lite.training.model_from_checkpoint import build_model_from_checkpoint


class _RunsCode:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_missing_dir(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="checkpointer.checkpoint_dir.*tune download"):
        FullModelHFCheckpointer(tmp_path / "nope", None, "LLAMA2", tmp_path / "out")


def test_missing_shard_lists_what_was_found(hf_tools, tmp_path):
    src = hf_tools.save_hf(hf_tools.tiny_hf_model(), tmp_path / "hf", max_shard_size="20KB")
    shards = sorted(src.glob("model-*.safetensors"))
    shards[-1].unlink()
    with pytest.raises(CheckpointNotFoundError, match=rf"{shards[-1].name} not found.*found: \['{shards[0].name}'"):
        FullModelHFCheckpointer(src, None, "LLAMA2", tmp_path / "out")
    with pytest.raises(CheckpointNotFoundError, match="model-00009-of-00009.safetensors not found"):
        FullModelHFCheckpointer(src, ["model-00009-of-00009.safetensors"], "LLAMA2", tmp_path / "out")


def test_truncated_safetensors(hf_tools, tmp_path):
    src = hf_tools.save_hf(hf_tools.tiny_hf_model(), tmp_path / "hf")
    path = src / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    ckpt = FullModelHFCheckpointer(src, None, "LLAMA2", tmp_path / "out")
    with pytest.raises(CheckpointFormatError, match="model.safetensors.*truncated or corrupt"):
        dict(ckpt.iter_model())


def test_pickle_that_runs_code_is_refused(hf_tools, tmp_path):
    src = hf_tools.save_hf(hf_tools.tiny_hf_model(), tmp_path / "hf", bin=True)
    marker = tmp_path / "pwned"
    sd = torch.load(src / "pytorch_model.bin", weights_only=True)
    sd["model.norm.weight"] = _RunsCode(marker)
    torch.save(sd, src / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="pytorch_model.bin.*refused"):
        dict(FullModelHFCheckpointer(src, None, "LLAMA2", tmp_path / "out").iter_model())
    torch.save({"optimizer": _RunsCode(marker)}, tmp_path / "recipe_state.pt")
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        load_recipe_state(tmp_path / "recipe_state.pt")
    assert not marker.exists()


def test_unknown_key(hf_tools, tmp_path):
    src = hf_tools.save_hf(hf_tools.tiny_hf_model(), tmp_path / "hf")
    sd = load_file(src / "model.safetensors")
    sd["model.layers.0.self_attn.gate.weight"] = torch.zeros(2)
    save_file(sd, src / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointFormatError, match="unexpected key 'model.layers.0.self_attn.gate.weight'"):
        dict(FullModelHFCheckpointer(src, None, "LLAMA2", tmp_path / "out").iter_model())


def test_shape_that_does_not_fit_config(hf_tools, tmp_path):
    src = hf_tools.save_hf(hf_tools.tiny_hf_model(), tmp_path / "hf")
    config = json.loads((src / "config.json").read_text())
    config["intermediate_size"] = 40
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointFormatError, match=r"layers.0.mlp.w2.weight has shape \[32, 48\].*expects \[32, 40\]"):
        build_model_from_checkpoint(functools.partial(from_pretrained_config, src),
                                    FullModelHFCheckpointer(src, None, "LLAMA2", tmp_path / "out"),
                                    device=torch.device("cpu"), dtype=torch.float32)


def test_missing_config(hf_tools, tmp_path):
    src = hf_tools.save_hf(hf_tools.tiny_hf_model(), tmp_path / "hf")
    (src / "config.json").unlink()
    with pytest.raises(CheckpointNotFoundError, match="config.json not found"):
        FullModelHFCheckpointer(src, None, "LLAMA2", tmp_path / "out")


def test_a_weight_in_two_shards_is_refused(hf_tools, tmp_path):
    src = hf_tools.save_hf(hf_tools.tiny_hf_model(), tmp_path / "hf")
    (src / "copy.safetensors").write_bytes((src / "model.safetensors").read_bytes())
    checkpointer = FullModelHFCheckpointer(src, ["model.safetensors", "copy.safetensors"], "LLAMA2", tmp_path / "out")
    with pytest.raises(CheckpointFormatError, match=r"hf holds '[a-z_.]+weight' twice.*list each shard once"):
        build_model_from_checkpoint(functools.partial(from_pretrained_config, src), checkpointer,
                                    device=torch.device("cpu"), dtype=torch.float32)
