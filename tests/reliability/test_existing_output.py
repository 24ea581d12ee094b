"""An output_dir that already holds a run is refused (one line, exit 1, nothing touched) unless the run
resumes it or is told to overwrite it."""

from __future__ import annotations

import json

from tests.reliability.conftest import read_losses, run_lora


def test_existing_run_is_refused_unless_resume_or_overwrite(hf_checkpoint, tmp_path):
    assert run_lora(hf_checkpoint, tmp_path, max_steps_per_epoch=1).returncode == 0
    files = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}

    refused = run_lora(hf_checkpoint, tmp_path, max_steps_per_epoch=1)
    assert refused.returncode == 1
    assert refused.error_lines == [
        f"error: output_dir {tmp_path} already holds a run (epoch_0, ...): pass resume_from_checkpoint=True to "
        "continue it, overwrite_output_dir=True to replace it, or choose another output_dir"
    ]
    assert {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()} == files  # not even the logs

    assert run_lora(hf_checkpoint, tmp_path, max_steps_per_epoch=1, overwrite_output_dir=True).returncode == 0
    resumed = run_lora(hf_checkpoint, tmp_path, max_steps_per_epoch=1, resume_from_checkpoint=True)
    assert resumed.returncode == 0 and "Resuming from" in resumed.stdout, resumed.stderr


def test_overwrite_output_dir_starts_fresh(hf_checkpoint, tmp_path):
    first = run_lora(hf_checkpoint, tmp_path, max_steps_per_epoch=2, save_every_n_steps=1)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in tmp_path.glob("*_*")) == ["epoch_0", "step_1"]
    first_losses = read_losses(tmp_path)

    again = run_lora(hf_checkpoint, tmp_path, max_steps_per_epoch=2, overwrite_output_dir=True)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in tmp_path.glob("*_*")) == ["epoch_0"]  # the stale step_1 is gone
    records = [json.loads(line) for line in (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 2]  # one run's log (2 steps, then val_loss), not two appended
    assert read_losses(tmp_path) == first_losses  # same command, same seed
