"""`tune` end to end through a subprocess, with a toy recipe and config (no model, no data)."""

import pytest
from omegaconf import OmegaConf

from torchtune_lite.cli._catalog import RECIPES, installed_recipes
from torchtune_lite.cli.run import _single_node, split_launcher_args
from torchtune_lite.cli.tune import build_parser


def _one_error_line(result, code: int = 2) -> str:
    """The contract for user errors: exit `code`, exactly one stderr line starting `error:`."""
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_run_toy_recipe_with_overrides(tune, tmp_path, toy_recipe, toy_config):
    result = tune("run", toy_recipe, "--config", toy_config, f"out_dir={tmp_path}", "a.b=3", "~c", "optimizer.lr=1e-4", "tags=[x,y]")
    assert result.returncode == 0, result.stderr
    cfg = OmegaConf.load(tmp_path / "rank0.yaml")
    assert cfg.a.b == 3
    assert cfg.a.log_dir == f"{tmp_path}/logs"  # interpolation follows the override
    assert cfg.c is None  # dropped from the YAML, so the schema default
    assert cfg.steps == 2 and cfg.tags == ["x", "y"]
    assert cfg.optimizer.lr == pytest.approx(1e-4) and cfg.optimizer_class == "SGD"


def test_run_swaps_component_keeping_its_arguments(tune, tmp_path, toy_recipe, toy_config):
    result = tune("run", toy_recipe, "--config", toy_config, f"out_dir={tmp_path}", "optimizer=torch.optim.AdamW")
    assert result.returncode == 0, result.stderr
    cfg = OmegaConf.load(tmp_path / "rank0.yaml")
    assert cfg.optimizer_class == "AdamW" and cfg.optimizer.lr == 0.1


@pytest.mark.parametrize(
    "override, message",
    [
        ("stepz=3", "error: unknown key 'stepz' (did you mean 'steps'?)"),
        ("steps=two", "error: steps: expected int, got 'two'"),
        ("optimizer.lrr=0.1", "error: optimizer.lrr: torch.optim.SGD does not accept 'lrr' (did you mean 'lr'?)"),
        ("optimizer=torch.optim.SGDD", "error: optimizer._component_: 'torch.optim' has no 'SGDD' (did you mean 'SGD'?)"),
        ("steps", "error: bad override 'steps': use key=value"),
        ("~nope", "error: cannot drop 'nope'"),
    ],
)
def test_run_user_errors_are_one_line(tune, tmp_path, toy_recipe, toy_config, override, message):
    line = _one_error_line(tune("run", toy_recipe, "--config", toy_config, f"out_dir={tmp_path}", override))
    assert line.startswith(message)
    assert not (tmp_path / "rank0.yaml").exists()  # stopped before the recipe ran


def test_run_missing_value_and_missing_config(tune, toy_recipe, toy_config):
    assert "out_dir" in _one_error_line(tune("run", toy_recipe, "--config", toy_config))
    assert "--config" in _one_error_line(tune("run", toy_recipe, "steps=3"))


def test_run_propagates_exit_code(tune, tmp_path, toy_recipe, toy_config):
    result = tune("run", toy_recipe, "--config", toy_config, f"out_dir={tmp_path}", "exit_code=3")
    assert result.returncode == 3 and (tmp_path / "rank0.yaml").exists()


def test_run_unknown_recipe_suggests_close_names(tune):
    line = _one_error_line(tune("run", "lora_finetune_single_devise", "--config", "x"))
    assert "unknown recipe 'lora_finetune_single_devise'" in line
    if any(r.name == "lora_finetune_single_device" for r in installed_recipes()):
        assert "close: lora_finetune_single_device" in line
    _one_error_line(tune("run", "missing_recipe.py", "--config", "x"))
    _one_error_line(tune("run", "--nproc_per_nod", "2", "x.py"))


def test_run_with_torchrun_flags_starts_one_process_per_rank(tune, tmp_path, toy_recipe, toy_config):
    result = tune("run", "--nproc_per_node", "2", toy_recipe, "--config", toy_config, f"out_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("rank*.yaml")) == ["rank0.yaml", "rank1.yaml"]


def test_split_launcher_args():
    assert split_launcher_args(["r.py", "--config", "x"]) == ([], ["r.py", "--config", "x"])
    launcher, rest = split_launcher_args(["--nproc-per-node=2", "--standalone", "--nnodes", "1", "r.py", "--config", "x"])
    assert launcher == ["--nproc-per-node=2", "--standalone", "--nnodes", "1"] and rest == ["r.py", "--config", "x"]
    assert _single_node(["--nproc_per_node", "2"]) and _single_node(["--nnodes", "1"])
    assert not _single_node(["--nnodes", "2"]) and not _single_node(["--master_port", "1234"])


def test_ls_lists_installed_recipes_and_their_configs(tune):
    result = tune("ls")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    for recipe in installed_recipes():
        assert [recipe.name, recipe.configs[0]] in rows
    assert {r.name for r in RECIPES} >= {"lora_finetune_single_device", "lora_finetune_distributed", "generate", "eval"}


def test_cp_refuses_overwrite_and_missing_folders(tune, tmp_path, toy_config):
    assert tune("cp", toy_config, "mine.yaml").returncode == 0
    assert (tmp_path / "mine.yaml").read_text() == toy_config.read_text()
    assert "--force" in _one_error_line(tune("cp", toy_config, "mine.yaml"))
    assert tune("cp", toy_config, "mine.yaml", "--force").returncode == 0
    assert "--make-parents" in _one_error_line(tune("cp", toy_config, "deep/er/mine"))
    assert tune("cp", toy_config, "deep/er/mine", "--make-parents").returncode == 0
    assert (tmp_path / "deep/er/mine.yaml").is_file()  # suffix added
    (tmp_path / "folder").mkdir()
    assert tune("cp", toy_config, "folder").returncode == 0 and (tmp_path / "folder/toy.yaml").is_file()
    assert "neither a recipe nor a config" in _one_error_line(tune("cp", "no_such_thing", "x.yaml"))


def test_cp_recipe_by_name(tune, tmp_path):
    if not installed_recipes():
        pytest.skip("no recipe installed yet")
    recipe = installed_recipes()[0]
    assert tune("cp", recipe.name, "copy.py").returncode == 0
    assert (tmp_path / "copy.py").read_text() == recipe.path.read_text()


def test_cat_prints_the_yaml(tune, toy_config):
    result = tune("cat", toy_config)
    assert result.returncode == 0 and result.stdout == toy_config.read_text()
    _one_error_line(tune("cat", "no_such_config"))


def test_validate_against_a_recipe(tune, tmp_path, toy_recipe, toy_config):
    ok = tune("validate", toy_config, "--recipe", toy_recipe, "out_dir=/tmp/x")
    assert ok.returncode == 0 and ok.stdout.strip() == "Config is well-formed!", ok.stderr
    line = _one_error_line(tune("validate", toy_config, "--recipe", toy_recipe, "out_dir=/tmp/x", "compil=True"))
    assert line == "error: unknown key 'compil': remove it or fix the name"
    assert "unknown recipe" in _one_error_line(tune("validate", toy_config, "--recipe", "nope"))
    assert not list(tmp_path.iterdir())  # validating runs nothing


def test_usage_errors_are_one_line(tune):
    _one_error_line(tune())
    _one_error_line(tune("bogus"))
    _one_error_line(tune("download", "org/model"))  # --output-dir is required


def test_download_parses_its_arguments():
    args = build_parser().parse_args(
        ["download", "meta-llama/Llama-2-7b-hf", "--output-dir", "/tmp/m", "--hf-token", "t", "--ignore-patterns", "*.pth", "*.bin"]
    )
    assert (args.repo_id, args.output_dir, args.hf_token) == ("meta-llama/Llama-2-7b-hf", "/tmp/m", "t")
    assert args.ignore_patterns == ["*.pth", "*.bin"]


@pytest.mark.parametrize(
    "env", [{"HF_HUB_OFFLINE": "1"}, {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}], ids=["offline", "unreachable"]
)
def test_download_without_network_fails_fast(tune, tmp_path, env):
    result = tune("download", "meta-llama/Llama-2-7b-hf", "--output-dir", tmp_path / "model", env=env, timeout=60)
    line = _one_error_line(result, code=1)
    assert "cannot reach the Hugging Face Hub" in line
    assert not (tmp_path / "model").exists()
