"""`tune validate <config> [--recipe NAME] [key=value ...]`: check a config against its recipe's settings
without running anything heavy."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from torchtune_lite.cli._catalog import find_recipe, recipe_for_config, unknown_recipe_message
from torchtune_lite.cli._errors import fail
from torchtune_lite.config import ConfigError, load_config, run_reporting_errors, validate


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("validate", help="check a config (and overrides) against its recipe without running")
    parser.add_argument("config", help="config name or YAML path")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    parser.add_argument("--recipe", default=None, help="recipe name or .py path whose settings to check against")
    parser.set_defaults(func=main)


def recipe_schema(recipe_path: Path) -> type:
    """The settings dataclass a recipe passed to `@config.parse`. Loading the file runs only its imports
    and definitions: recipes start work under `if __name__ == "__main__"`. The module stays in `sys.modules`,
    where `typing.get_type_hints` resolves the schema's string annotations (`from __future__ import annotations`)."""
    name = f"torchtune_lite_recipe_{recipe_path.stem}"
    spec = importlib.util.spec_from_file_location(name, recipe_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    schemas = [getattr(v, "config_schema") for v in vars(module).values() if callable(v) and hasattr(v, "config_schema")]
    if not schemas:
        raise ConfigError(f"{recipe_path.name} declares no settings: decorate its recipe_main with @config.parse(Schema)")
    return schemas[0]


def _recipe_path(args: argparse.Namespace) -> Path:
    if args.recipe and args.recipe.endswith(".py"):
        path = Path(args.recipe)
        if not path.is_file():
            fail(f"recipe file {path} does not exist")
        return path
    recipe = find_recipe(args.recipe) if args.recipe else recipe_for_config(args.config)
    if recipe is None:
        fail(unknown_recipe_message(args.recipe))
    if not recipe.installed:
        fail(f"recipe '{recipe.name}' is listed but {recipe.file} is not installed: pass --recipe")
    return recipe.path


def main(args: argparse.Namespace) -> None:
    recipe_path = _recipe_path(args)

    def check() -> None:
        validate(load_config(args.config, args.overrides), recipe_schema(recipe_path))
        print("Config is well-formed!")

    run_reporting_errors(check)
