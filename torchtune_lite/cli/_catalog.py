"""The recipes `tune` knows by name, and the configs each one accepts. Edit this list to add a recipe."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

_LORA_CONFIGS = (
    "tiny/qlora", "tiny/lora",
    "llama2/7B_qlora", "llama2/7B_lora", "llama2/13B_qlora", "llama2/13B_lora", "llama2/70B_qlora", "llama2/70B_lora",
    "llama3_1/8B_lora", "llama3_1/8B_qlora", "llama3_1/70B_qlora",
    "llama3_2/1B_lora", "llama3_2/3B_lora", "llama3_2/3B_qlora",
    "qwen2_5/0.5B_lora", "qwen2_5/7B_lora", "qwen2_5/7B_qlora",
    "qwen3/0.6B_lora", "qwen3/8B_lora", "qwen3/8B_qlora",
    "mistral/7B_lora", "mistral/7B_qlora",
    "gemma2/2B_lora", "gemma2/2B_qlora", "gemma2/9B_qlora", "gemma3/1B_lora", "gemma3/1B_qlora", "gemma3/4B_qlora",
    "hf/qlora", "hf/lora",
)

_DPO_CONFIGS = (
    "tiny/qlora_dpo", "tiny/lora_dpo",
    "llama2/7B_qlora_dpo", "llama3_1/8B_qlora_dpo", "llama3_2/3B_qlora_dpo", "qwen2_5/7B_qlora_dpo",
    "qwen3/8B_qlora_dpo", "mistral/7B_qlora_dpo", "gemma2/9B_qlora_dpo", "gemma3/4B_qlora_dpo",
    "hf/qlora_dpo",
)


@dataclass(frozen=True)
class Recipe:
    name: str
    file: str  # inside the torchtune_lite.recipes package
    configs: tuple[str, ...]

    @property
    def path(self) -> Path:
        return Path(str(files("torchtune_lite.recipes"))) / self.file

    @property
    def installed(self) -> bool:
        return self.path.is_file()


RECIPES: tuple[Recipe, ...] = (
    Recipe("lora_finetune_single_device", "lora_finetune_single_device.py", _LORA_CONFIGS),
    Recipe("lora_finetune_distributed", "lora_finetune_distributed.py", _LORA_CONFIGS),
    Recipe("lora_dpo_single_device", "lora_dpo_single_device.py", _DPO_CONFIGS),
    Recipe("lora_dpo_distributed", "lora_dpo_distributed.py", _DPO_CONFIGS),
    Recipe("full_finetune_single_device", "full_finetune_single_device.py", ("tiny/pretrain",)),
    Recipe("generate", "generate.py", ("generation",)),
    Recipe("eval", "eval.py", ("eval",)),
)

DEFAULT_RECIPE = "lora_finetune_single_device"


def installed_recipes() -> list[Recipe]:
    """Catalog entries whose file ships in this install (a listed recipe may not be written yet)."""
    return [r for r in RECIPES if r.installed]


def find_recipe(name: str) -> Recipe | None:
    return next((r for r in RECIPES if r.name == name.removesuffix(".py")), None)


def unknown_recipe_message(name: str) -> str:
    names = [r.name for r in installed_recipes()]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"close: {', '.join(close)}" if close else f"known: {', '.join(names)}"
    return f"unknown recipe '{name}' ({hint}); pass a catalog name or a path to a .py file"


def recipe_for_config(config_name: str) -> Recipe:
    """The first recipe that lists the config (what `tune validate` checks against by default)."""
    short = config_name.removesuffix(".yaml")
    for recipe in RECIPES:
        if any(c == short or c.split("/")[-1] == short for c in recipe.configs):
            return recipe
    return find_recipe(DEFAULT_RECIPE)
