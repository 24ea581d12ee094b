"""A NaN/inf loss stops the run at that step with a message naming it, exit 1, and the checkpoint saved
before it stays whole and loadable (SFT LoRA, full and DPO; lr=1e30 blows the loss up within a few steps)."""

from __future__ import annotations

import re

import pytest
import torch

from tests.reliability.conftest import assert_checkpoint_whole, read_losses, run_dpo, run_full, run_lora, saved_checkpoints


@pytest.mark.parametrize("run", [run_lora, run_full, run_dpo], ids=["lora", "full", "dpo"])
def test_non_finite_loss_stops_at_its_step_and_keeps_the_last_checkpoint(run, hf_checkpoint, tmp_path):
    out = tmp_path / "out"
    result = run(hf_checkpoint, out, save_every_n_steps=1, **{"optimizer.lr": 1e30})
    assert result.returncode == 1, result.stderr
    # Either the loss itself goes non-finite (that step is neither logged nor saved), or a finite-loss step
    # overflows the weights (logged, but its checkpoint is refused): in both the newest checkpoint is usable.
    stop = re.fullmatch(r"error: (loss is (nan|inf|-inf)|the weights became NaN or inf) at step (\d+) \(epoch_0\); "
                        r"(stopping and keeping the last good checkpoint|not saving them, the last good checkpoint stays): .*",
                        result.error_lines[-1])
    assert stop, result.stderr
    bad_step, loss_was_bad = int(stop.group(3)), stop.group(1).startswith("loss")
    assert bad_step >= 2 and len(read_losses(out)) == bad_step - int(loss_was_bad)
    assert saved_checkpoints(out) == [f"step_{s}" for s in range(1, bad_step)]
    loaded = assert_checkpoint_whole(out / f"step_{bad_step - 1}")
    for name, tensor in {**loaded["model"], **loaded.get("adapter", {})}.items():
        assert torch.isfinite(tensor).all(), f"{name} in the last kept checkpoint is not finite"
