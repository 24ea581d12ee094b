from __future__ import annotations

import errno
import io

import pytest
import torch

from torchtune_lite.checkpointing import (
    RECIPE_STATE_FILE,
    CheckpointFormatError,
    CheckpointWriteError,
    FullModelHFCheckpointer,
    _recipe_state,
    load_recipe_state,
    save_recipe_state,
)
from torchtune_lite.training.output_dir import find_latest_checkpoint


def test_recipe_state_round_trip_with_optimizer_and_rng(tmp_path):
    param = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.AdamW([param], lr=0.1)
    param.grad = torch.ones(3)
    opt.step()
    state = {"optimizer": opt.state_dict(), "epoch": 2, "step": 17, "rng": torch.get_rng_state(),
             "progress": {"batches_seen": [4, 5]}, "name": "lora"}
    save_recipe_state(tmp_path / RECIPE_STATE_FILE, state)
    back = load_recipe_state(tmp_path / RECIPE_STATE_FILE)
    assert back["step"] == 17 and back["progress"] == {"batches_seen": [4, 5]} and torch.equal(back["rng"], state["rng"])
    torch.testing.assert_close(back["optimizer"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_resume_reads_checkpoint_written_last_with_its_files(hf_tools, tmp_path):
    src = hf_tools.save_hf(hf_tools.tiny_hf_model(), tmp_path / "hf")
    out_dir = tmp_path / "out"
    ckpt = FullModelHFCheckpointer(src, None, "LLAMA2", out_dir)
    model = dict(ckpt.iter_model())
    adapter = {"layers.0.attn.v_proj.lora_a.weight": torch.randn(2, hf_tools.DIM),
               "layers.0.attn.v_proj.lora_b.weight": torch.zeros(hf_tools.DIM, 2)}
    path = ckpt.save_checkpoint({"model": model, "adapter": adapter, "adapter_config": {"lora_alpha": 2},
                                 "recipe_state": {"step": 5}}, epoch=0, step=5)
    assert path.name == "step_5" and find_latest_checkpoint(out_dir) == path
    files = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()} - {RECIPE_STATE_FILE}
    written = load_recipe_state(path / RECIPE_STATE_FILE)["checkpoint_files"]
    assert set(written) == files and "adapter/adapter_model.safetensors" in files
    assert max((path / f).stat().st_mtime_ns for f in files) <= (path / RECIPE_STATE_FILE).stat().st_mtime_ns

    # the way FinetuneRecipe resumes: the checkpoint folder itself becomes checkpoint_dir
    resumer = FullModelHFCheckpointer(path, None, "LLAMA2", out_dir, adapter_checkpoint=path,
                                      recipe_checkpoint=path / RECIPE_STATE_FILE)
    resumed, resumed_model = resumer.load_checkpoint(), dict(resumer.iter_model())
    assert resumed["recipe_state"]["step"] == 5
    assert all(torch.equal(resumed_model[k], model[k]) for k in model)
    assert all(torch.equal(resumed["adapter"][k], adapter[k]) for k in adapter)

    (path / written[0]).unlink()
    with pytest.raises(CheckpointFormatError, match="gone from"):
        FullModelHFCheckpointer(src, None, "LLAMA2", out_dir, recipe_checkpoint=path / RECIPE_STATE_FILE).load_checkpoint()


def test_full_disk_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    class FullDisk(io.FileIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    # torch.save reports the writer's failure as a RuntimeError; the OSError behind it must still surface.
    monkeypatch.setattr(_recipe_state, "open", lambda path, mode: FullDisk(path, "w"), raising=False)
    path = tmp_path / RECIPE_STATE_FILE
    with pytest.raises(CheckpointWriteError, match=f"could not write checkpoint file {path}: No space left on device") as info:
        save_recipe_state(path, {"step": torch.tensor(1)})
    assert info.value.errno == errno.ENOSPC and str(info.value).startswith("could not write")
    assert list(tmp_path.iterdir()) == []
