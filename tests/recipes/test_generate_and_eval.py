"""`tune run generate` and `tune run eval` on a run's output: merged weights, base + adapter merged while
loading, and base + adapter in a LoRA model all give the same model; bad input is one error line."""

from __future__ import annotations

import math
import re

import pytest
import torch

from tests.recipes.conftest import TINY, error_lines, run_tune, tiny_overrides
from torchtune_lite import config
from torchtune_lite.data import padded_collate_sft
from torchtune_lite.inference.generation import Completion, complete
from torchtune_lite.training.evaluation import evaluate_loss
from torchtune_lite.inference.model_loading import load_inference_model

PROMPT = "What does the red wolf eat?"

MODEL = [f"model.{k}={v}" for k, v in TINY.items()]
LORA_MODEL = [
    "model=torchtune_lite.models.llama2.lora_llama2", "model.lora_attn_modules=[q_proj,k_proj,v_proj,output_proj]",
    "model.apply_lora_to_mlp=True", "model.lora_rank=16", "model.lora_alpha=32",
]


@pytest.fixture(scope="module")
def lora_run(hf_checkpoint, tmp_path_factory):
    """Two LoRA steps on the random tiny base: adapters that change the model."""
    out = tmp_path_factory.mktemp("lora_run")
    run_tune("run", "lora_finetune_single_device", "--config", "tiny/lora",
             *tiny_overrides(hf_checkpoint, out, max_steps_per_epoch=2, max_val_batches=1))
    return out / "epoch_0"


def _generate_cli(*overrides: str) -> tuple[str, int]:
    """The answer `tune run generate` prints (no token ids: those are not for users) and its token count."""
    proc = run_tune("run", "generate", "--config", "generation", f"prompt={PROMPT}", "max_new_tokens=16", "dtype=fp32", *overrides)
    match = re.fullmatch(r"(.*)\n\n(\d+) tokens in [^\n]*, stopped at [^\n]*\n", proc.stdout, re.S)
    assert match and "[" not in proc.stdout.splitlines()[-1], proc.stdout
    return match.group(1), int(match.group(2))


def _generate_here(*overrides: str) -> Completion:
    """What the recipe does, in this process (each `tune` process costs seconds of imports)."""
    cfg = config.load_config("generation", ["dtype=fp32", *overrides])
    model = load_inference_model(cfg, device=torch.device("cpu"), dtype=torch.float32)
    return complete(model, config.instantiate(cfg.tokenizer), PROMPT, max_new_tokens=16)


def test_merged_checkpoint_and_base_plus_adapter_generate_the_same_tokens(lora_run, hf_checkpoint):
    adapter = [f"checkpointer.checkpoint_dir={hf_checkpoint}", f"checkpointer.adapter_checkpoint={lora_run / 'adapter'}"]
    merged_on_load = _generate_cli(*MODEL, *adapter)
    merged = _generate_here(*MODEL, f"checkpointer.checkpoint_dir={lora_run}")
    in_lora_model = _generate_here(*LORA_MODEL, *MODEL, *adapter)
    base = _generate_here(*MODEL, f"checkpointer.checkpoint_dir={hf_checkpoint}")
    assert len(merged.tokens) == 16  # a random model does not stop at EOS
    assert merged.tokens == in_lora_model.tokens
    assert merged_on_load == (merged.text, 16)
    assert base.tokens != merged.tokens  # the adapter is really applied


def test_eval_scores_merged_and_base_plus_adapter_alike(lora_run, hf_checkpoint):
    proc = run_tune("run", "eval", "--config", "eval", "max_batches=2", "dtype=fp32", *MODEL,
                    f"checkpointer.checkpoint_dir={hf_checkpoint}", f"checkpointer.adapter_checkpoint={lora_run / 'adapter'}")
    match = re.search(r"loss (\d+\.\d+), perplexity (\d+\.\d+) over (\d+) tokens", proc.stdout)
    assert match, proc.stdout
    loss, perplexity = float(match.group(1)), float(match.group(2))
    assert perplexity == pytest.approx(math.exp(loss), rel=1e-3)

    cfg = config.load_config("eval", ["dtype=fp32", *MODEL, f"checkpointer.checkpoint_dir={lora_run}"])
    model = load_inference_model(cfg, device=torch.device("cpu"), dtype=torch.float32)
    tokenizer = config.instantiate(cfg.tokenizer)
    samples = config.instantiate(cfg.dataset, tokenizer)
    batches = [padded_collate_sft([samples[i] for i in range(b * 8, b * 8 + 8)]) for b in range(2)]
    merged = evaluate_loss(model, batches, device=torch.device("cpu"))
    assert int(match.group(3)) == merged.num_tokens
    assert loss == pytest.approx(merged.loss, abs=2e-4)
    assert 4.0 < loss < 9.0  # a near-random model over a 1024-token vocabulary (ln 1024 = 6.9)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["prompt=" + "wolf " * 600], "exceeds the model's context of 512 tokens"),
        (["checkpointer.adapter_checkpoint={adapter}"], "which do not fit the base weight"),
    ],
    ids=["prompt-too-long", "adapter-of-another-base"],
)
def test_bad_input_is_one_error_line(lora_run, overrides, message):
    overrides = [o.format(adapter=lora_run / "adapter") for o in overrides]
    proc = run_tune("run", "generate", "--config", "generation", *overrides, check=False)
    assert proc.returncode != 0
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message in lines[0]


def test_generate_uses_the_chat_layout_the_run_trained_with(hf_checkpoint, tmp_path):
    """A run trained with llama2_chat saves it with the checkpoint; generate finds it and encodes the prompt
    as the training samples' user turns were (BOS [INST] ... [/INST]), not in the bare Alpaca template."""
    import json

    out = tmp_path / "chat_run"
    run_tune("run", "lora_finetune_single_device", "--config", "tiny/lora", "tokenizer.prompt_template=llama2_chat",
             *tiny_overrides(hf_checkpoint, out, max_steps_per_epoch=1, dataset_val="null", run_val_every_n_steps="null"))
    for folder in (out / "epoch_0", out / "epoch_0" / "adapter"):
        saved = json.loads((folder / "tokenizer_config.json").read_text())
        assert (saved["prompt_format"], saved["prompt_template"]) == ("alpaca", "llama2_chat") and "[INST]" in saved["chat_template"]
    proc = run_tune("run", "generate", "--config", "generation", f"prompt={PROMPT}", "max_new_tokens=2", "dtype=fp32",
                    *MODEL, f"checkpointer.checkpoint_dir={out / 'epoch_0'}")
    assert f"Prompts laid out as the run trained them (alpaca, llama2_chat; from {out / 'epoch_0' / 'tokenizer_config.json'})" in proc.stdout
