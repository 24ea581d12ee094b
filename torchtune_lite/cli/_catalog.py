"""The recipes `tune` knows by name, and the configs each one accepts."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

_LORA_CONFIGS = (
    "tiny/qlora", "tiny/lora",
    "llama2/7B_qlora", "llama2/7B_lora", "llama2/13B_qlora", "llama2/13B_lora", "llama2/70B_qlora", "llama2/70B_lora",
)


@dataclass(frozen=True)
class Recipe:
    name: str
    file: str
    configs: tuple[str, ...]
    distributed: bool = False

    @property
    def path(self) -> Path:
        return Path(str(files("torchtune_lite.recipes"))) / self.file


RECIPES = (
    Recipe("lora_finetune_single_device", "lora_finetune_single_device.py", _LORA_CONFIGS),
    Recipe("full_finetune_single_device", "full_finetune_single_device.py", ("tiny/pretrain",)),
)


def find_recipe(name: str) -> Recipe | None:
    return next((r for r in RECIPES if r.name == name.removesuffix(".py")), None)


def recipe_for_config(config_name: str) -> Recipe:
    """The first recipe that lists the config (what `tune validate` checks against by default)."""
    short = config_name.removesuffix(".yaml")
    for recipe in RECIPES:
        if any(c == short or c.split("/")[-1] == short for c in recipe.configs):
            return recipe
    return RECIPES[0]
