"""A save that fails half way (disk full) leaves the previous checkpoint intact and publishes nothing."""

from __future__ import annotations

import errno

import pytest
import torch

from torchtune_lite.checkpointing import CheckpointWriteError, FullModelHFCheckpointer
from torchtune_lite.checkpointing import _safetensors_io
from torchtune_lite.checkpointing._atomic import atomic_write_bytes


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("target_epoch", [0, 1], ids=["overwrite-same-epoch", "new-epoch"])
def test_disk_full_mid_save_keeps_previous_checkpoint(hf_tools, tmp_path, monkeypatch, target_epoch):
    src = hf_tools.save_hf(hf_tools.tiny_hf_model(), tmp_path / "hf")
    out_dir = tmp_path / "out"
    ckpt = FullModelHFCheckpointer(src, None, "LLAMA2", out_dir, max_shard_size=20_000)
    state = {"model": dict(ckpt.iter_model())}
    first = ckpt.save_checkpoint({**state, "recipe_state": {"step": torch.tensor(1)}}, epoch=0)
    before = _snapshot(first)
    assert len([n for n in before if n.name.startswith("model-")]) > 1

    real_write, calls = _safetensors_io._stream_to_file, []

    def write_then_run_out_of_space(filename, header, tensors):
        calls.append(filename)
        if len(calls) == 2:  # second shard: leave a partial file behind, like a full disk does
            with open(filename, "wb") as f:
                f.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(filename, header, tensors)

    monkeypatch.setattr(_safetensors_io, "_stream_to_file", write_then_run_out_of_space)
    with pytest.raises(CheckpointWriteError, match=r"model-00002-of-\d+\.safetensors.*No space left") as info:
        ckpt.save_checkpoint({**state, "recipe_state": {"step": torch.tensor(2)}}, epoch=target_epoch)
    assert info.value.errno == errno.ENOSPC
    assert sorted(p.name for p in out_dir.iterdir()) == ["epoch_0"]  # no epoch_1, no staging leftovers
    assert _snapshot(first) == before


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    atomic_write_bytes(path, b"old")

    def fail(*args):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr("os.replace", fail)
    with pytest.raises(CheckpointWriteError, match="config.json"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["config.json"]
