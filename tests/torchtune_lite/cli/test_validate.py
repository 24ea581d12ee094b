"""`tune validate` and `tune run` on a recipe whose settings dataclass has string annotations
(`from __future__ import annotations`): the schema's hints resolve, and the recipe gets a typed settings object."""

import textwrap

RECIPE = textwrap.dedent(
    '''
    from __future__ import annotations

    from dataclasses import dataclass
    from typing import Optional

    from torchtune_lite import config
    from torchtune_lite.config import Component


    @dataclass
    class Settings:
        optimizer: Component
        steps: Optional[int] = None


    @config.parse(Settings)
    def recipe_main(cfg: Settings) -> None:
        print(type(cfg).__name__, cfg.steps, cfg.optimizer.lr)


    if __name__ == "__main__":
        recipe_main()
    '''
)


def test_string_annotations_validate_and_run(tune, tmp_path):
    (tmp_path / "future_recipe.py").write_text(RECIPE)
    (tmp_path / "future.yaml").write_text("optimizer:\n  _component_: torch.optim.SGD\n  lr: 0.5\nsteps: 3\n")
    ok = tune("validate", "future.yaml", "--recipe", "future_recipe.py")
    assert ok.returncode == 0 and ok.stdout.strip() == "Config is well-formed!", ok.stderr
    bad = tune("validate", "future.yaml", "--recipe", "future_recipe.py", "steps=abc")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: steps: expected int, got 'abc'", bad.stderr
    ran = tune("run", "future_recipe.py", "--config", "future.yaml", "steps=4")
    assert ran.returncode == 0 and ran.stdout.strip() == "Settings 4 0.5", ran.stderr
