"""A save that dies half way (SIGKILL) or fails (file too large, as on a full disk) leaves the previous
checkpoint whole and loadable; the next run tidies the killed save's leftovers and resumes."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.reliability.conftest import (
    REFERENCE_STEPS,
    assert_checkpoint_whole,
    read_losses,
    run_faulty,
    run_lora,
    saved_checkpoints,
    tensor_files,
    tiny_overrides,
)


def _lora_args(base: Path, out: Path) -> list[str]:
    return ["run", "lora_finetune_single_device", "--config", "tiny/lora",
            *tiny_overrides(base, out, max_steps_per_epoch=REFERENCE_STEPS, save_every_n_steps=2)]


def test_sigkill_mid_save_keeps_previous_checkpoint_and_resume_tidies_up(hf_checkpoint, reference_run, tmp_path):
    out = tmp_path / "out"
    proc = run_faulty("kill-during-save:2", *_lora_args(hf_checkpoint, out))  # the save of step_4

    assert proc.returncode == -signal.SIGKILL, proc.stderr
    leftovers = [name for name in saved_checkpoints(out) if name.startswith(".step_4.tmp-")]
    assert saved_checkpoints(out) == [*leftovers, "step_2"] and len(leftovers) == 1  # died half way through step_4
    assert any(p.name.startswith(".model-") for p in (out / leftovers[0]).iterdir())
    assert_checkpoint_whole(out / "step_2")

    resumed = run_lora(hf_checkpoint, out, max_steps_per_epoch=REFERENCE_STEPS, save_every_n_steps=2,
                       resume_from_checkpoint=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming from" in resumed.stdout and "step 2" in resumed.stdout
    assert saved_checkpoints(out) == ["epoch_0", "step_2", "step_4"]  # the staging folder is gone
    losses = read_losses(out)  # steps 1-4 before the kill, then 3-6 again from step_2
    assert losses[:2] + losses[4:] == read_losses(reference_run)
    assert tensor_files(out / "epoch_0") == tensor_files(reference_run / "epoch_0")


def test_failed_write_names_the_file_and_keeps_previous_checkpoint(hf_checkpoint, tmp_path):
    out = tmp_path / "out"
    proc = run_faulty("fsize-limit-after-save:1", *_lora_args(hf_checkpoint, out))  # step_4's writes fail

    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "could not write checkpoint file" in last and "File too large" in last, proc.stderr
    assert f"{out / 'step_4' / 'model-00001-of-00001.safetensors'}:" in last and "Traceback" not in proc.stderr
    assert saved_checkpoints(out) == ["step_2"]  # nothing half-written, no staging folder left
    assert_checkpoint_whole(out / "step_2")
