"""End to end through `tune run full_finetune_single_device` (the recipe that pretrains the bundled base)."""

from __future__ import annotations

import torch

from tests.recipes.conftest import read_losses, run_tune, tiny_overrides


def test_full_finetune_learns_and_saves_an_hf_model(hf_checkpoint, tmp_path):
    from transformers import LlamaForCausalLM

    overrides = tiny_overrides(hf_checkpoint, tmp_path, max_steps_per_epoch=6, **{"optimizer.lr": 3e-3})
    overrides = [o for o in overrides if not o.startswith(("generate_after_training", "lr_scheduler"))]
    run_tune("run", "full_finetune_single_device", "--config", "tiny/pretrain", *overrides,
             "~lr_scheduler", "dataset.packed=False", "generate_after_training=null")
    losses = read_losses(tmp_path)
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.5, losses

    trained = LlamaForCausalLM.from_pretrained(tmp_path / "epoch_0").eval()
    base = LlamaForCausalLM.from_pretrained(hf_checkpoint).eval()
    changed = [n for n, p in trained.named_parameters() if not torch.equal(p, dict(base.named_parameters())[n])]
    assert len(changed) == len(list(base.parameters()))  # every weight trained, not just adapters
