"""`tune` pieces that test_tune_cli.py does not cover: component swap and exit codes through `tune run`,
launcher-flag splitting, `validate --recipe path.py` with overrides after it, download argument parsing
and an unreachable Hub, and the catalog's contents."""

import pytest
from omegaconf import OmegaConf

from torchtune_lite.cli._catalog import RECIPES, find_recipe, installed_recipes, recipe_for_config
from torchtune_lite.cli.run import _single_node, split_launcher_args
from torchtune_lite.cli.tune import build_parser
from torchtune_lite.config import list_configs


def _one_error_line(result, code: int = 2) -> str:
    """The contract for user errors: exit `code`, exactly one stderr line starting `error:`."""
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_run_drops_key_to_schema_default_and_swaps_component(tune, tmp_path, toy_recipe, toy_config):
    result = tune("run", toy_recipe, "--config", toy_config, f"out_dir={tmp_path}", "a.b=3", "~c", "optimizer=torch.optim.AdamW")
    assert result.returncode == 0, result.stderr
    cfg = OmegaConf.load(tmp_path / "rank0.yaml")
    assert cfg.a == {"b": 3, "log_dir": f"{tmp_path}/logs"}  # interpolation follows the out_dir override
    assert cfg.c is None  # dropped from the YAML, so the schema default
    assert cfg.optimizer_class == "AdamW" and cfg.optimizer.lr == 0.1  # swapped, keeping lr


def test_run_propagates_the_recipes_exit_code(tune, tmp_path, toy_recipe, toy_config):
    result = tune("run", toy_recipe, "--config", toy_config, f"out_dir={tmp_path}", "exit_code=3")
    assert result.returncode == 3 and (tmp_path / "rank0.yaml").exists()


def test_validate_with_recipe_path_and_overrides_after_options(tune, tmp_path, toy_recipe, toy_config):
    ok = tune("validate", toy_config, "--recipe", toy_recipe, "out_dir=/tmp/x")
    assert ok.returncode == 0 and ok.stdout.strip() == "Config is well-formed!", ok.stderr
    line = _one_error_line(tune("validate", toy_config, "--recipe", toy_recipe, "out_dir=/tmp/x", "stepz=3"))
    assert line == "error: unknown key 'stepz' (did you mean 'steps'?): remove it or fix the name"
    _one_error_line(tune("validate", toy_config, "--recipe", toy_recipe, "--bogus"))
    assert not list(tmp_path.iterdir())  # validating runs nothing


def test_split_launcher_args():
    assert split_launcher_args(["r.py", "--config", "x"]) == ([], ["r.py", "--config", "x"])
    launcher, rest = split_launcher_args(["--nproc-per-node=2", "--standalone", "--nnodes", "1", "r.py", "--config", "x"])
    assert launcher == ["--nproc-per-node=2", "--standalone", "--nnodes", "1"] and rest == ["r.py", "--config", "x"]
    # single node unless a rendezvous is named: then tune adds --standalone (a free port, not 29500)
    assert _single_node(["--nproc_per_node", "2"]) and _single_node(["--nnodes=1"])
    assert not _single_node(["--nnodes", "2"]) and not _single_node(["--master_port", "1234"])


def test_catalog():
    assert [r.name for r in RECIPES][:2] == ["lora_finetune_single_device", "lora_finetune_distributed"]
    assert {"generate", "eval", "full_finetune_single_device"} <= {r.name for r in RECIPES}
    assert recipe_for_config("tiny/pretrain").name == "full_finetune_single_device"
    assert recipe_for_config("7B_qlora").name == recipe_for_config("not_listed").name == "lora_finetune_single_device"
    assert find_recipe("lora_finetune_single_device.py") is RECIPES[0]
    shipped = set(list_configs())
    for recipe in installed_recipes():  # a listed config of an installed recipe must ship
        assert set(recipe.configs) <= shipped, recipe.name


def test_download_parses_its_arguments():
    args = build_parser().parse_args(
        ["download", "meta-llama/Llama-2-7b-hf", "--output-dir", "/tmp/m", "--hf-token", "t", "--ignore-patterns", "*.pth", "*.bin"]
    )
    assert (args.repo_id, args.output_dir, args.hf_token) == ("meta-llama/Llama-2-7b-hf", "/tmp/m", "t")
    assert args.ignore_patterns == ["*.pth", "*.bin"]


def test_download_from_an_unreachable_hub_fails_fast(tune, tmp_path):
    env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens on port 9
    result = tune("download", "meta-llama/Llama-2-7b-hf", "--output-dir", tmp_path / "model", env=env, timeout=60)
    assert "cannot reach the Hugging Face Hub" in _one_error_line(result, code=1)
    assert not (tmp_path / "model").exists()
