"""Every shipped config works as shipped, in every recipe the catalog (`tune ls`) says it serves.

The tiny configs run in full through the real CLI, changed only in `max_steps_per_epoch` and
`output_dir` (generation after training stays on, the distributed recipe runs on 2 gloo ranks). The
configs of real models need weights and data that are not here: they go through `tune validate` with
their paths pointed at bundled or locally built files (the Llama-2 ones at the bundled tiny base, the
Gemma ones at a tiny Gemma folder, the others at a tiny Qwen folder, each with its own tokenizer.json and
chat template), and their model is
built on the meta device: Llama-2's checked against the published parameter counts (the other families'
builders are checked against theirs in tests/torchtune_lite/models/test_family_builders.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from tests.recipes.conftest import ASSETS, run_tune
from tests.recipes.test_hf_folder_finetune import save_gemma_folder, save_qwen_folder
from tests.reliability.conftest import tune
from torchtune_lite import config
from torchtune_lite.cli._catalog import RECIPES
from torchtune_lite.config import list_configs

TRAINING_RECIPES = {"lora_finetune_single_device", "lora_finetune_distributed", "full_finetune_single_device",
                    "lora_dpo_single_device", "lora_dpo_distributed"}
SERVED = [(r.name, c) for r in RECIPES for c in r.configs]
TINY = [(r, c) for r, c in SERVED if c.startswith("tiny/") or r in ("generate", "eval")]
LARGE = [(r, c) for r, c in SERVED if (r, c) not in TINY]
# Parameters of the published Llama-2 checkpoints (base weights; LoRA adapters come on top).
BASE_PARAMETERS = {"7B": 6_738_415_616, "13B": 13_015_864_320, "70B": 68_976_648_192}


def test_every_shipped_config_is_served_by_some_recipe():
    assert sorted({c for _, c in SERVED}) == list_configs()


def _launcher(recipe: str) -> list[str]:
    return ["--nproc_per_node", "2"] if recipe.endswith("_distributed") else []


@pytest.mark.parametrize("recipe, config_name", TINY, ids=[f"{r}-{c}" for r, c in TINY])
def test_tiny_config_runs_as_shipped(recipe, config_name, tmp_path):
    out = tmp_path / "out"
    args = ["run", *_launcher(recipe), recipe, "--config", config_name]
    if recipe in TRAINING_RECIPES:
        args += ["max_steps_per_epoch=1", f"output_dir={out}"]
        if config_name == "tiny/pretrain":  # the one config with no base to start from: its checkpoint_dir is ???
            args += [f"checkpointer.checkpoint_dir={ASSETS / 'base'}"]
    # One device in this process (the same code path as a new `tune`, without seconds of imports); ranks in processes.
    proc = run_tune(*args, timeout=600) if _launcher(recipe) else tune(*args)
    assert proc.returncode == 0, proc.stderr
    if recipe == "generate":
        assert "tokens in" in proc.stdout and "stopped at" in proc.stdout
    elif recipe == "eval":
        assert "perplexity" in proc.stdout
    else:
        shipped = config.load_config(config_name, [f"checkpointer.checkpoint_dir={ASSETS / 'base'}"])
        epochs = shipped.epochs
        assert sorted(p.name for p in out.glob("epoch_*")) == [f"epoch_{e}" for e in range(epochs)]
        records = [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
        if shipped.get("dataset_val"):
            assert [r["step"] for r in records if "val_loss" in r] == [epochs]  # one step per epoch, validated after the last
        assert "Training done" in proc.stdout
        assert re.search(r"memory estimate [\d.]+ GiB vs measured rss_peak [\d.]+ GiB \([+-]\d+%\)", proc.stdout)  # rank 0 of both recipes
        if shipped.get("generate_after_training"):
            assert f"Prompt: {shipped.generate_after_training}" in proc.stdout and "Generation: " in proc.stdout
            assert proc.stdout.count("Generation: ") == 1  # rank 0 prints, the other ranks only take part


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    """A tiny Qwen2 checkpoint folder as the Hub ships one: weights, config.json, tokenizer.json, chat template."""
    return save_qwen_folder(tmp_path_factory.mktemp("hf_folder"))


@pytest.fixture(scope="module")
def gemma_folder(tmp_path_factory) -> Path:
    """A tiny Gemma-2 checkpoint folder as the Hub ships one (Gemma's tokenizer.json, <bos>, chat template)."""
    return save_gemma_folder(tmp_path_factory.mktemp("gemma_folder"))


def _large_overrides(config_name: str, tmp_path: Path, hf_folder: Path, gemma_folder: Path) -> list[str]:
    """Paths that exist here in place of the config's downloads; everything else as shipped."""
    data = "preference_train.json" if config_name.endswith("_dpo") else "instruct_train.json"
    paths = [f"output_dir={tmp_path / 'out'}", f"dataset.data_files={ASSETS / data}"]
    if config_name.startswith("llama2/"):
        return paths + [f"tokenizer.path={ASSETS / 'tokenizer.model'}", f"checkpointer.checkpoint_dir={ASSETS / 'base'}"]
    folder = gemma_folder if config_name.startswith("gemma") else hf_folder
    return paths + [f"checkpointer.checkpoint_dir={folder}"]  # tokenizer and chat template come from the folder


@pytest.mark.parametrize("recipe, config_name", LARGE, ids=[f"{r}-{c}" for r, c in LARGE])
def test_large_config_validates_and_builds_on_meta(recipe, config_name, tmp_path, hf_folder, gemma_folder):
    overrides = _large_overrides(config_name, tmp_path, hf_folder, gemma_folder)
    proc = tune("validate", config_name, "--recipe", recipe, *overrides)
    assert proc.returncode == 0 and proc.stdout.strip() == "Config is well-formed!", proc.stderr
    assert not (tmp_path / "out").exists()  # validating writes nothing

    cfg = config.load_config(config_name, overrides)
    with torch.device("meta"):
        model = config.instantiate(cfg.model)
    assert any("lora_" in name for name, _ in model.named_parameters())
    if config_name.startswith("llama2/"):
        base = sum(p.numel() for name, p in model.named_parameters() if "lora_" not in name)
        assert base == BASE_PARAMETERS[config_name.split("/")[1].split("_")[0]]  # 7B_qlora_dpo -> 7B


@pytest.mark.parametrize("config_name", ["llama2/7B_qlora", "llama2/70B_lora"])
def test_large_config_as_shipped_names_the_missing_download(config_name, tmp_path):
    proc = tune("validate", config_name, f"output_dir={tmp_path / 'out'}")
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: tokenizer.path /tmp/Llama-2-"), proc.stderr
