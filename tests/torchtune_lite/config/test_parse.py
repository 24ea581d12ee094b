"""`config.parse`: the command line of a recipe script, and `import_component` edge cases."""

import sys
from dataclasses import dataclass

import pytest

from torchtune_lite import config
from torchtune_lite.config import ConfigError, import_component
from torchtune_lite.config._parse import parse_recipe_args


def test_parse_recipe_args():
    assert parse_recipe_args(["--config", "tiny/lora", "a.b=1", "~c"]) == ("tiny/lora", ["a.b=1", "~c"])
    assert parse_recipe_args(["x=1", "--config=my.yaml"]) == ("my.yaml", ["x=1"])


@pytest.mark.parametrize(
    "argv, message",
    [([], "missing --config"), (["--config"], "--config needs a value"), (["--config", "c", "--lr=1"], "unknown option '--lr=1'")],
)
def test_parse_recipe_args_errors(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_recipe_args(argv)


@dataclass
class Settings:
    out: str
    steps: int = 1


def test_parse_validates_before_the_recipe_runs(tmp_path, monkeypatch, capsys):
    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text("out: here\n")
    seen = []

    @config.parse(Settings)
    def recipe_main(cfg) -> None:
        seen.append(cfg)

    assert recipe_main.config_schema is Settings  # what `tune validate` checks against
    monkeypatch.setattr(sys, "argv", ["recipe.py", "--config", str(yaml_path), "steps=4"])
    recipe_main()
    assert seen[0].steps == 4 and seen[0].out == "here"

    monkeypatch.setattr(sys, "argv", ["recipe.py", "--config", str(yaml_path), "step=4"])
    with pytest.raises(SystemExit) as exit_info:
        recipe_main()
    assert exit_info.value.code == 2 and len(seen) == 1
    assert capsys.readouterr().err == "error: unknown key 'step' (did you mean 'steps'?): remove it or fix the name\n"


def test_parse_needs_a_dataclass():
    with pytest.raises(TypeError, match="dataclass"):
        config.parse(dict)


def test_import_component_attribute_paths_and_broken_modules(tmp_path, monkeypatch):
    import torch

    assert import_component("torch.nn.Linear.forward") is torch.nn.Linear.forward
    (tmp_path / "broken_toy_module.py").write_text("import not_a_real_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # the module exists but its import fails: say so, rather than "no such module"
    with pytest.raises(ConfigError, match="importing 'broken_toy_module' failed"):
        import_component("broken_toy_module.build")
    with pytest.raises(ConfigError, match=r"'torch' has no 'optimm' \(did you mean 'optim'\?\)"):
        import_component("torch.optimm.AdamW")
    with pytest.raises(ConfigError, match="is not callable"):
        import_component("torch.__version__")
