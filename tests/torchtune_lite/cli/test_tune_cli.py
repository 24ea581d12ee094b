"""The real `tune` command, run as a subprocess: ls, cat, cp, validate, run (single and 2-process), download."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from torchtune_lite.config import list_configs, resolve_config

TUNE = [sys.executable, "-m", "torchtune_lite.cli.tune"]

TOY_RECIPE = '''
"""A toy recipe: validates its config against a small schema and writes it to cfg.out_file."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Optional

from omegaconf import OmegaConf

from torchtune_lite import config


@dataclass
class ToyConfig:
    out_file: str
    steps: int = 3
    lr: float = 0.1
    name: Optional[str] = None
    tags: list = field(default_factory=list)
    wrapper: Optional[config.Component] = None


@config.parse(ToyConfig)
def recipe_main(cfg) -> None:
    rank = os.environ.get("RANK")
    path = cfg.out_file if rank is None else f"{cfg.out_file}.rank{rank}"
    payload = OmegaConf.to_container(config.as_config(cfg))
    payload["world_size"] = os.environ.get("WORLD_SIZE")
    with open(path, "w") as f:
        json.dump(payload, f)


if __name__ == "__main__":
    recipe_main()
'''


def tune(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("TUNE_TRACEBACK", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    full_env.update(env or {})
    return subprocess.run([*TUNE, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def assert_one_error_line(result: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def toy(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(recipe.py, config.yaml, out_file) in a fresh folder."""
    recipe = tmp_path / "toy.py"
    recipe.write_text(TOY_RECIPE)
    out = tmp_path / "out.json"
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(
        textwrap.dedent(
            f"""
            out_file: {out}
            steps: 5
            name: base
            tags: [a]
            wrapper:
              _component_: textwrap.TextWrapper
              width: 20
            """
        )
    )
    return recipe, cfg, out


# ---------------------------------------------------------------- ls / cat / cp
def test_ls_lists_recipes_and_configs(tmp_path: Path):
    result = tune("ls", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["RECIPE", "CONFIG"]
    assert any(line.split() == ["lora_finetune_single_device", "tiny/qlora"] for line in lines)
    assert any(line.split() == ["full_finetune_single_device", "tiny/pretrain"] for line in lines)
    listed = {line.split()[-1] for line in lines[1:]}
    assert listed <= set(list_configs()) and "llama2/7B_qlora" in listed


def test_cat_prints_the_config_file(tmp_path: Path):
    result = tune("cat", "7B_qlora", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == resolve_config("llama2/7B_qlora").read_text()


def test_cat_unknown_suggests(tmp_path: Path):
    assert_one_error_line(tune("cat", "7B_qlor", cwd=tmp_path), 2, "7B_qlora")


def test_cp_config_force_and_make_parents(tmp_path: Path):
    source = resolve_config("7B_qlora").read_text()
    result = tune("cp", "7B_qlora", "mine.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "mine.yaml").read_text() == source

    (tmp_path / "mine.yaml").write_text("edited: true\n")
    refused = tune("cp", "7B_qlora", "mine.yaml", cwd=tmp_path)
    assert_one_error_line(refused, 2, "already exists", "--force")
    assert (tmp_path / "mine.yaml").read_text() == "edited: true\n"
    forced = tune("cp", "7B_qlora", "mine.yaml", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "mine.yaml").read_text() == source

    no_parent = tune("cp", "tiny/lora", "a/b/c.yaml", cwd=tmp_path)
    assert_one_error_line(no_parent, 2, "does not exist", "--make-parents")
    assert not (tmp_path / "a").exists()
    made = tune("cp", "tiny/lora", "a/b/c.yaml", "--make-parents", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "a/b/c.yaml").read_text() == resolve_config("tiny/lora").read_text()


def test_cp_recipe_into_folder_and_suffixless_dest(tmp_path: Path):
    (tmp_path / "dir").mkdir()
    result = tune("cp", "lora_finetune_single_device", "dir", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "dir/lora_finetune_single_device.py").read_text().startswith('"""LoRA')
    result = tune("cp", "tiny/lora", "cfg", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cfg.yaml").is_file()


def test_cp_unknown_name(tmp_path: Path):
    assert_one_error_line(tune("cp", "nosuchthing", "x.yaml", cwd=tmp_path), 2, "neither a recipe nor a config")


# ---------------------------------------------------------------- validate
# Each `tune validate` imports torch and the recipe (~seconds), so the four are started together.
_ASSETS = Path(__file__).resolve().parents[3] / "torchtune_lite" / "assets" / "tiny"
# 7B_qlora reads a download this machine lacks (validate checks the files exist): the bundled tiny files stand in.
_HERE_PATHS = [f"tokenizer.path={_ASSETS / 'tokenizer.model'}", f"checkpointer.checkpoint_dir={_ASSETS / 'base'}",
               f"dataset.data_files={_ASSETS / 'instruct_train.json'}", "output_dir=out"]
VALIDATE_CASES = {
    "ok": (_HERE_PATHS, None),
    "compil": (["compil=True"], ("compil", "did you mean 'compile'")),
    "lrr": (["optimizer.lrr=1"], ("optimizer.lrr", "did you mean 'lr'")),
    "two": (["batch_size=two"], ("batch_size", "expected int", "'two'")),
}


@pytest.fixture(scope="module")
def validate_results(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    cwd = tmp_path_factory.mktemp("validate")
    env = {k: v for k, v in os.environ.items() if k != "TUNE_TRACEBACK"}
    procs = {
        name: subprocess.Popen([*TUNE, "validate", "7B_qlora", *overrides], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, (overrides, _) in VALIDATE_CASES.items()
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return results


def test_validate_ok(validate_results):
    result = validate_results["ok"]
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Config is well-formed!"


@pytest.mark.parametrize("case", ["compil", "lrr", "two"])
def test_validate_errors(validate_results, case: str):
    assert_one_error_line(validate_results[case], 2, *VALIDATE_CASES[case][1])
    assert "well-formed" not in validate_results[case].stdout


def test_validate_unknown_config_and_recipe(tmp_path: Path):
    assert_one_error_line(tune("validate", "7B_qlor", cwd=tmp_path), 2, "7B_qlora")
    assert_one_error_line(tune("validate", "7B_qlora", "--recipe", "lora_finetune", cwd=tmp_path), 2,
                          "unknown recipe 'lora_finetune'", "lora_finetune_single_device")


# ---------------------------------------------------------------- run
def test_run_unknown_recipe_suggests(tmp_path: Path):
    result = tune("run", "lora_finetune_single_devic", "--config", "tiny/lora", cwd=tmp_path)
    assert_one_error_line(result, 2, "unknown recipe 'lora_finetune_single_devic'", "lora_finetune_single_device")


@pytest.mark.parametrize(
    "args, fragment",
    [([], "needs a recipe"), (["missing.py", "--config", "x.yaml"], "does not exist"),
     (["--bogus", "toy.py"], "unknown launcher flag --bogus"), (["--nproc_per_node"], "needs a value")],
)
def test_run_argument_errors(tmp_path: Path, args: list[str], fragment: str):
    assert_one_error_line(tune("run", *args, cwd=tmp_path), 2, fragment)


def test_run_toy_recipe_with_overrides(toy, tmp_path: Path):
    recipe, cfg, out = toy
    result = tune("run", str(recipe), "--config", str(cfg), "steps=7", "lr=1e-4", "tags=[x,y]", "~name",
                  "wrapper.width=9", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = json.loads(out.read_text())
    assert written == {
        "out_file": str(out), "steps": 7, "lr": 1e-4, "name": None, "tags": ["x", "y"],
        "wrapper": {"_component_": "textwrap.TextWrapper", "width": 9}, "world_size": None,
    }


def test_run_toy_recipe_needs_config(toy, tmp_path: Path):
    recipe, _, out = toy
    assert_one_error_line(tune("run", str(recipe), "steps=1", cwd=tmp_path), 2, "--config")
    assert not out.exists()


@pytest.mark.parametrize(
    "overrides, fragments",
    [(["stepz=2"], ("unknown key 'stepz'", "did you mean 'steps'")),
     (["wrapper.widht=3"], ("wrapper.widht", "did you mean 'width'")),
     (["steps=many"], ("steps: expected int",)),
     (["~out_file"], ("missing required key 'out_file'",)),
     (["~nope"], ("cannot drop 'nope'",)),
     (["--steps=3"], ("unknown option '--steps=3'",))],
)
def test_run_toy_recipe_bad_config_stops_before_the_body(toy, tmp_path: Path, overrides, fragments):
    recipe, cfg, out = toy
    result = tune("run", str(recipe), "--config", str(cfg), *overrides, cwd=tmp_path)
    assert_one_error_line(result, 2, *fragments)
    assert not out.exists()


def test_run_two_processes(toy, tmp_path: Path):
    recipe, cfg, out = toy
    result = tune("run", "--nproc_per_node", "2", str(recipe), "--config", str(cfg), "steps=11",
                  cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert not out.exists()
    for rank in (0, 1):
        written = json.loads(Path(f"{out}.rank{rank}").read_text())
        assert written["steps"] == 11 and written["world_size"] == "2"


# ---------------------------------------------------------------- download
def test_download_offline_fails_fast(tmp_path: Path):
    result = tune("download", "meta-llama/Llama-2-7b-hf", "--output-dir", str(tmp_path / "weights"),
                  cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"}, timeout=60)
    assert_one_error_line(result, 1, "meta-llama/Llama-2-7b-hf")
    assert not any((tmp_path / "weights").glob("*.safetensors"))


@pytest.mark.parametrize(
    "args, fragment",
    [(["download", "meta-llama/Llama-2-7b-hf"], "--output-dir"), (["download", "--output-dir", "x"], "repo_id")],
)
def test_download_argument_errors(tmp_path: Path, args: list[str], fragment: str):
    assert_one_error_line(tune(*args, cwd=tmp_path), 2, "required", fragment)
    assert not (tmp_path / "x").exists()


def test_no_subcommand_prints_the_help(tmp_path: Path):
    result = tune(cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith("usage: tune ") and "validate" in result.stdout and "plot" in result.stdout
