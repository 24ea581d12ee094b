"""Every shipped config works as shipped, in every recipe the catalog (`tune ls`) says it serves.

The tiny configs run in full through the real CLI, changed only in `max_steps_per_epoch` and
`output_dir` (generation after training stays on, the distributed recipe runs on 2 gloo ranks). The
Llama-2 7B/13B/70B configs need weights and data that are not here: they go through `tune validate`
with their paths pointed at the bundled tiny files, and their model is built on the meta device and
checked against the published parameter counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.recipes.conftest import ASSETS, run_tune
from tests.reliability.conftest import tune
from torchtune_lite import config
from torchtune_lite.cli._catalog import RECIPES
from torchtune_lite.config import list_configs

TRAINING_RECIPES = {"lora_finetune_single_device", "lora_finetune_distributed", "full_finetune_single_device"}
SERVED = [(r.name, c) for r in RECIPES for c in r.configs]
TINY = [(r, c) for r, c in SERVED if not c.startswith("llama2/")]
LARGE = [(r, c) for r, c in SERVED if c.startswith("llama2/")]
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
        if shipped.get("generate_after_training"):
            assert f"Prompt: {shipped.generate_after_training}" in proc.stdout and "Generation: " in proc.stdout
            assert proc.stdout.count("Generation: ") == 1  # rank 0 prints, the other ranks only take part


def _large_overrides(tmp_path: Path) -> list[str]:
    """Paths that exist here in place of the 7B/13B/70B configs' downloads; everything else as shipped."""
    return [
        f"output_dir={tmp_path / 'out'}",
        f"tokenizer.path={ASSETS / 'tokenizer.model'}",
        f"checkpointer.checkpoint_dir={ASSETS / 'base'}",
        f"dataset.data_files={ASSETS / 'instruct_train.json'}",
    ]


@pytest.mark.parametrize("recipe, config_name", LARGE, ids=[f"{r}-{c}" for r, c in LARGE])
def test_large_config_validates_and_builds_on_meta(recipe, config_name, tmp_path):
    proc = tune("validate", config_name, "--recipe", recipe, *_large_overrides(tmp_path))
    assert proc.returncode == 0 and proc.stdout.strip() == "Config is well-formed!", proc.stderr
    assert not (tmp_path / "out").exists()  # validating writes nothing

    cfg = config.load_config(config_name, _large_overrides(tmp_path))
    with torch.device("meta"):
        model = config.instantiate(cfg.model)
    base = sum(p.numel() for name, p in model.named_parameters() if "lora_" not in name)
    assert base == BASE_PARAMETERS[config_name.split("/")[1].split("_")[0]]
    assert any("lora_" in name for name, _ in model.named_parameters())


@pytest.mark.parametrize("config_name", ["llama2/7B_qlora", "llama2/70B_lora"])
def test_large_config_as_shipped_names_the_missing_download(config_name, tmp_path):
    proc = tune("validate", config_name, f"output_dir={tmp_path / 'out'}")
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: tokenizer.path /tmp/Llama-2-"), proc.stderr
