"""SIGINT/SIGTERM mid-epoch: a resumable checkpoint at the current step, exit 130/143, and resuming ends
with exactly (bitwise, fp32 on CPU) the weights of a run that was never interrupted, for SFT and DPO."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.reliability.conftest import (REFERENCE_STEPS, dpo_overrides, read_losses, run_dpo, run_faulty, run_lora,
                                       tensor_files, tiny_overrides)


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


def _learning_metrics(output_dir: Path) -> list[dict]:
    """Every logged record without its clock, throughput and memory figures (they differ between runs;
    nothing else may)."""
    records = [json.loads(line) for line in (output_dir / "logs" / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time" and not k.endswith("_per_second") and not k.startswith("rss_")}
            for r in records]


def test_interrupted_dpo_run_resumes_to_the_uninterrupted_losses_rewards_and_adapter(hf_checkpoint, tmp_path):
    reference, out = tmp_path / "reference", tmp_path / "out"
    uninterrupted = run_dpo(hf_checkpoint, reference, max_steps_per_epoch=REFERENCE_STEPS)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    proc = run_faulty("signal-after-step:SIGTERM:3", "run", "lora_dpo_single_device", "--config", "tiny/lora_dpo",
                      *dpo_overrides(hf_checkpoint, out, max_steps_per_epoch=REFERENCE_STEPS))
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert 3 <= len(read_losses(out)) < REFERENCE_STEPS

    resumed = run_dpo(hf_checkpoint, out, max_steps_per_epoch=REFERENCE_STEPS, resume_from_checkpoint=True)
    assert resumed.returncode == 0, resumed.stderr
    expected = _learning_metrics(reference)
    assert {"rewards/accuracies", "rewards/margins", "logps/rejected"} <= set(expected[0])
    assert any("val_loss" in r for r in expected)
    assert _learning_metrics(out) == expected  # losses, rewards, log-probs and validation, exactly
    assert tensor_files(out / "epoch_0") == tensor_files(reference / "epoch_0")
