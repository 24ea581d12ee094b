"""End to end through `tune run lora_finetune_single_device` on a tiny random base (CPU). How runs fail
(bad input, interruption, crashes) is tested in tests/reliability/."""

from __future__ import annotations

import re

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tests.recipes.conftest import read_losses, run_tune, tiny_overrides


def _run(config: str, hf_checkpoint, out, new_process: bool = False, timeout: int = 300, **extra):
    return run_tune("run", "lora_finetune_single_device", "--config", config, *tiny_overrides(hf_checkpoint, out, **extra),
                    new_process=new_process, timeout=timeout)


@pytest.mark.parametrize("config", ["tiny/qlora", "tiny/lora"])
def test_loss_falls_and_checkpoint_loads_in_transformers_and_peft(config, hf_checkpoint, tmp_path):
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    proc = _run(config, hf_checkpoint, tmp_path)
    assert re.search(r"^Training: 8 steps in \d+\.\d s \(epoch_0 step 8 loss \d+\.\d+\)$", proc.stderr, re.M)  # no terminal: one line
    losses = read_losses(tmp_path)
    assert len(losses) == 8
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.2, losses

    ckpt = tmp_path / "epoch_0"
    assert (ckpt / "recipe_state.pt").is_file()
    assert (ckpt / "adapter" / "adapter_model.safetensors").is_file()
    adapter_config = json.loads((ckpt / "adapter" / "adapter_config.json").read_text())
    assert set(adapter_config["target_modules"]) >= {"q_proj", "k_proj", "v_proj", "o_proj"}

    tokens = torch.randint(0, 1024, (2, 24))
    merged = LlamaForCausalLM.from_pretrained(ckpt).eval()
    base = LlamaForCausalLM.from_pretrained(hf_checkpoint).eval()
    with torch.no_grad():
        merged_logits = merged(tokens).logits
        base_logits = base(tokens).logits
        adapted = PeftModel.from_pretrained(base, ckpt / "adapter").eval()
        peft_logits = adapted(tokens).logits
    # training changed the model, and the merged checkpoint equals base + PEFT adapter
    assert (merged_logits - base_logits).abs().max() > 1e-2
    if config == "tiny/lora":
        torch.testing.assert_close(peft_logits, merged_logits, atol=1e-4, rtol=1e-4)
    else:
        # QLoRA trains against the NF4 base; the merged checkpoint holds the dequantized base + delta, so
        # only the adapter part is comparable through PEFT's full-precision base: the logits move the same way.
        assert torch.nn.functional.cosine_similarity(
            (peft_logits - base_logits).flatten(), (merged_logits - base_logits).flatten(), dim=0
        ) > 0.9


def _interrupted_copy(full, part, checkpoint: str, steps_done: int) -> None:
    """`part` as a run stopped right after `checkpoint`: that checkpoint and the log lines up to it."""
    part.mkdir()
    shutil.copytree(full / checkpoint, part / checkpoint)
    (part / "logs").mkdir()
    lines = (full / "logs" / "metrics.jsonl").read_text().splitlines()[:steps_done]
    (part / "logs" / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_resume_after_an_epoch_reproduces_uninterrupted_losses(hf_checkpoint, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    _run("tiny/qlora", hf_checkpoint, full, epochs=2, max_steps_per_epoch=4)
    _interrupted_copy(full, part, "epoch_0", steps_done=4)
    _run("tiny/qlora", hf_checkpoint, part, epochs=2, max_steps_per_epoch=4, resume_from_checkpoint=True)
    assert read_losses(part) == pytest.approx(read_losses(full), abs=1e-6)
    a = load_file(full / "epoch_1" / "adapter" / "adapter_model.safetensors")
    b = load_file(part / "epoch_1" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_mid_epoch_reproduces_uninterrupted_losses(hf_checkpoint, tmp_path):
    # seed=null: the resumed run must reuse the seed the run drew (a new one would reshuffle the epoch)
    full, part = tmp_path / "full", tmp_path / "part"
    _run("tiny/lora", hf_checkpoint, full, max_steps_per_epoch=6, save_every_n_steps=3, seed="null")
    assert (full / "step_3" / "recipe_state.pt").is_file()
    _interrupted_copy(full, part, "step_3", steps_done=3)
    _run("tiny/lora", hf_checkpoint, part, max_steps_per_epoch=6, save_every_n_steps=3, resume_from_checkpoint=True, seed="null")
    assert read_losses(part) == pytest.approx(read_losses(full), abs=1e-6)


def test_activation_checkpointing_gives_the_same_losses_and_adapter(hf_checkpoint, tmp_path):
    plain, checkpointed = tmp_path / "plain", tmp_path / "checkpointed"
    _run("tiny/qlora", hf_checkpoint, plain, max_steps_per_epoch=3, gradient_accumulation_steps=2)
    _run("tiny/qlora", hf_checkpoint, checkpointed, max_steps_per_epoch=3, gradient_accumulation_steps=2,
         enable_activation_checkpointing=True)
    assert len(read_losses(plain)) == 3
    assert read_losses(checkpointed) == pytest.approx(read_losses(plain), abs=1e-6)
    a = load_file(plain / "epoch_0" / "adapter" / "adapter_model.safetensors")
    b = load_file(checkpointed / "epoch_0" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7) for k in a)


def test_compile_runs_on_cpu_and_reports_compile_time(hf_checkpoint, tmp_path, monkeypatch):
    """Packed training data (one batch shape, so no recompile for a new length) validated on unpacked data,
    eagerly: validation compiles nothing (its no_grad graphs at new lengths would cost more than they gain)."""
    # A new process: this one may already hold compiled code for the layers (dynamo caches per code object).
    # On a cold inductor cache this run takes about 100 s alone on a 2-core CPU (compiling the training graphs),
    # and twice that beside another test worker, so it gets more time than the other runs.
    monkeypatch.setenv("TORCH_LOGS", "recompiles")  # dynamo then logs each recompile with its reason
    proc = _run("tiny/qlora", hf_checkpoint, tmp_path, new_process=True, compile=True, max_steps_per_epoch=3, dtype="bf16",
                timeout=600, **{"dataset.packed": True})
    assert len(read_losses(tmp_path)) == 3
    assert "torch.compile: the first step took" in proc.stdout + proc.stderr
    rows = [json.loads(line) for line in (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()]
    compile_rows = [r for r in rows if "compile_seconds" in r]
    assert len(compile_rows) == 1 and compile_rows[0]["compile_seconds"] > 0.5  # the first step compiled the layers
    assert [r["step"] for r in rows if "val_loss" in r] == [3]  # the padded validation set took its own collator
    # One recompile, for the layers after the first (their input requires grad); none for validation.
    reasons = re.findall(r"guard failure\(s\):\n.*?- (.*)$", proc.stderr, re.M)
    assert proc.stderr.count("Recompiling function") == 1 and "requires_grad mismatch" in reasons[0], reasons


def test_nf4_cache_is_written_once_and_reused_with_equal_losses(hf_checkpoint, tmp_path):
    cache_dir = tmp_path / "nf4_cache"
    _run("tiny/qlora", hf_checkpoint, tmp_path / "first", max_steps_per_epoch=3, nf4_cache_dir=cache_dir)
    written = list(cache_dir.glob("nf4-*.safetensors"))
    assert len(written) == 1
    stamp = written[0].stat().st_mtime_ns
    _run("tiny/qlora", hf_checkpoint, tmp_path / "second", max_steps_per_epoch=3, nf4_cache_dir=cache_dir)
    assert list(cache_dir.glob("nf4-*.safetensors")) == written and written[0].stat().st_mtime_ns == stamp  # read, not rewritten
    assert read_losses(tmp_path / "second") == read_losses(tmp_path / "first")
