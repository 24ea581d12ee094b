"""SIGINT/SIGTERM mid-epoch: a resumable checkpoint at the current step, exit 130/143, and resuming ends
with exactly (bitwise, fp32 on CPU) the weights of a run that was never interrupted."""

from __future__ import annotations

import signal

import pytest

from tests.reliability.conftest import REFERENCE_STEPS, read_losses, run_faulty, run_lora, tensor_files, tiny_overrides


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_saves_at_the_step_and_resume_matches_uninterrupted(sig, hf_checkpoint, reference_run, tmp_path):
    out = tmp_path / "out"
    args = tiny_overrides(hf_checkpoint, out, max_steps_per_epoch=REFERENCE_STEPS)
    proc = run_faulty(f"signal-after-step:{sig.name}:2", "run", "lora_finetune_single_device", "--config", "tiny/lora", *args)

    assert proc.returncode == 128 + sig, proc.stderr
    steps_done = len(read_losses(out))
    assert 2 <= steps_done < REFERENCE_STEPS  # stopped mid-epoch, after finishing the step in flight
    assert sorted(p.name for p in out.iterdir()) == ["logs", f"step_{steps_done}"]
    assert (out / f"step_{steps_done}" / "recipe_state.pt").is_file()
    assert f"Stopped by signal after step {steps_done}; resume with resume_from_checkpoint=True" in proc.stdout

    resumed = run_lora(hf_checkpoint, out, max_steps_per_epoch=REFERENCE_STEPS, resume_from_checkpoint=True)
    assert resumed.returncode == 0, resumed.stderr
    assert read_losses(out) == read_losses(reference_run)
    final, expected = tensor_files(out / "epoch_0"), tensor_files(reference_run / "epoch_0")
    assert "adapter/adapter_model.safetensors" in final and len(final) >= 2
    assert final == expected  # merged model and adapter, byte for byte
