"""`tune run lora_dpo_single_device` / `lora_dpo_distributed` on the shipped tiny DPO configs: the reward
accuracy rises on the bundled pairs, two ranks give one device's losses, a run from an SFT adapter starts
with the policy equal to its reference, and bad pairs stop the run in one line before the model is built."""

from __future__ import annotations

import json
from pathlib import Path

import peft
import pytest
import torch
import transformers

from tests.recipes.conftest import ASSETS, error_lines, run_tune, save_random_llama, tiny_overrides
from torchtune_lite.checkpointing import FullModelHFCheckpointer

SHAPE = dict(vocab_size=1024, num_layers=2, num_heads=8, num_kv_heads=4, embed_dim=256, intermediate_dim=768, max_seq_len=512)


def metrics(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "logs" / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("config", ["tiny/qlora_dpo", "tiny/lora_dpo"])
def test_reward_accuracy_rises_and_the_adapter_loads_in_peft(config, tmp_path):
    out = tmp_path / "run"
    run_tune("run", "lora_dpo_single_device", "--config", config, f"output_dir={out}", "max_steps_per_epoch=8",
             "log_every_n_steps=1", "dtype=fp32", "run_val_every_n_steps=null", "max_val_batches=2", "generate_after_training=null")
    train = [r for r in metrics(out) if "loss" in r]
    assert train[0]["rewards/accuracies"] == 0.0 and train[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference
    assert train[-1]["rewards/accuracies"] >= 0.9 and train[-1]["rewards/margins"] > 0 and train[-1]["loss"] < 0.5
    assert {"pairs_per_second", "logps/chosen", "logps/rejected", "rewards/chosen", "rewards/rejected"} <= set(train[-1])
    val = [r for r in metrics(out) if "val_loss" in r]
    assert val and val[-1]["val_rewards/accuracies"] >= 0.9  # held-out questions prefer the style too
    adapter = out / "epoch_0" / "adapter"
    base = transformers.AutoModelForCausalLM.from_pretrained(ASSETS / "base", dtype=torch.float32)
    tuned = peft.PeftModel.from_pretrained(base, adapter).eval()
    assert any("lora_B" in n and p.abs().sum() > 0 for n, p in tuned.named_parameters())


@pytest.fixture(scope="module")
def random_base(tmp_path_factory) -> Path:
    return save_random_llama(tmp_path_factory.mktemp("hf_dpo"), SHAPE)


def _dpo_overrides(base: Path, out: Path, **extra) -> list[str]:
    settings = {"max_steps_per_epoch": 4, "run_val_every_n_steps": 2, "max_val_batches": 2, "optimizer.lr": 1e-3, **extra}
    return tiny_overrides(base, out, shape=SHAPE, **settings)


def test_two_ranks_match_one_device(random_base, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run_tune("run", "lora_dpo_single_device", "--config", "tiny/qlora_dpo", *_dpo_overrides(random_base, one, batch_size=4))
    run_tune("run", "--nproc_per_node", "2", "lora_dpo_distributed", "--config", "tiny/qlora_dpo",
             *_dpo_overrides(random_base, two, batch_size=2), timeout=600)
    keys = ("loss", "rewards/chosen", "rewards/margins", "logps/chosen", "logps/rejected")
    a, b = [r for r in metrics(one) if "loss" in r], [r for r in metrics(two) if "loss" in r]
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        for key in keys:
            assert y[key] == pytest.approx(x[key], rel=1e-5, abs=1e-6), (key, a, b)
    va, vb = [r["val_loss"] for r in metrics(one) if "val_loss" in r], [r["val_loss"] for r in metrics(two) if "val_loss" in r]
    assert len(va) == 2 and vb == pytest.approx(va, rel=1e-5)


def test_start_adapter_is_the_reference(random_base, tmp_path):
    """From an SFT adapter the first step's policy is its reference: zero rewards, loss log 2; the adapter's
    effect is real (a fresh start from the same base scores the pairs differently)."""
    ckpt = FullModelHFCheckpointer(random_base, None, "LLAMA2", tmp_path / "sft")
    g = torch.Generator().manual_seed(0)
    adapter = {}
    for i in range(SHAPE["num_layers"]):
        for proj, out_dim in (("q_proj", 256), ("k_proj", 128), ("v_proj", 128), ("output_proj", 256)):
            adapter[f"layers.{i}.attn.{proj}.lora_a.weight"] = 0.05 * torch.randn(16, 256, generator=g)
            adapter[f"layers.{i}.attn.{proj}.lora_b.weight"] = 0.05 * torch.randn(out_dim, 16, generator=g)
    sft = ckpt.save_checkpoint({"adapter": adapter, "adapter_config": {"lora_alpha": 32.0}}, epoch=0) / "adapter"
    fresh, started = tmp_path / "fresh", tmp_path / "started"
    common = dict(max_steps_per_epoch=2, run_val_every_n_steps="null", **{"model.apply_lora_to_mlp": False})
    run_tune("run", "lora_dpo_single_device", "--config", "tiny/lora_dpo", *_dpo_overrides(random_base, fresh, **common))
    run_tune("run", "lora_dpo_single_device", "--config", "tiny/lora_dpo", *_dpo_overrides(random_base, started, start_adapter=sft, **common))
    first = [r for r in metrics(started) if "loss" in r][0]
    assert first["rewards/margins"] == 0.0 and first["loss"] == pytest.approx(0.693147, abs=1e-6)
    assert [r for r in metrics(fresh) if "loss" in r][0]["logps/chosen"] != pytest.approx(first["logps/chosen"], rel=1e-3)


@pytest.mark.parametrize("row, message", [
    ({"prompt": "q", "chosen": "same", "rejected": "same"}, "'chosen' and 'rejected' are the same answer"),
    ({"prompt": "q", "chosen": "a"}, "column 'rejected': the row has no 'rejected'"),
], ids=["identical", "missing-column"])
def test_bad_pairs_stop_before_the_model_is_built(row, message, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n" + json.dumps(row) + "\n")
    proc = run_tune("run", "lora_dpo_single_device", "--config", "tiny/qlora_dpo", f"output_dir={tmp_path / 'out'}",
                    f"dataset.data_files={data}", check=False)
    lines = error_lines(proc.stderr)
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert f"{data} row 2: {message}" in lines[0]
    assert "Model ready" not in proc.stdout and not (tmp_path / "out" / "logs").exists()
