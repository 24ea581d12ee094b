"""How a run ends early: SIGTERM mid-epoch (resumable checkpoint, exit 143) and a non-finite loss (exit 1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.recipes.conftest import read_losses, run_tune, tiny_overrides


def test_sigterm_saves_a_resumable_checkpoint(hf_checkpoint, tmp_path):
    args = tiny_overrides(hf_checkpoint, tmp_path, max_steps_per_epoch=400, **{"optimizer.lr": 1e-4})
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "torchtune_lite.cli.tune", "run", "lora_finetune_single_device",
                             "--config", "tiny/lora", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = tmp_path / "logs" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    steps_done = len(read_losses(tmp_path))
    assert (tmp_path / f"step_{steps_done}" / "recipe_state.pt").is_file(), sorted(p.name for p in tmp_path.iterdir())
    assert "resume_from_checkpoint=True" in out + err

    resumed = tiny_overrides(hf_checkpoint, tmp_path, max_steps_per_epoch=steps_done + 2, resume_from_checkpoint=True,
                             **{"optimizer.lr": 1e-4})
    run_tune("run", "lora_finetune_single_device", "--config", "tiny/lora", *resumed)
    assert len(read_losses(tmp_path)) == steps_done + 2


def test_non_finite_loss_stops_with_the_step(hf_checkpoint, tmp_path):
    args = tiny_overrides(hf_checkpoint, tmp_path, **{"optimizer.lr": 1e30})
    proc = run_tune("run", "lora_finetune_single_device", "--config", "tiny/lora", *args, check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: loss is") and "at step" in last, proc.stderr
    assert not (tmp_path / "epoch_0").exists()
