"""The `tune` subcommands. User errors print one `error:` line and exit 2 (1 for a failed download)."""

from __future__ import annotations

import argparse
import difflib
import os
import runpy
import shutil
import sys
from pathlib import Path
from typing import NoReturn

from torchtune_lite.cli._catalog import RECIPES, find_recipe, recipe_for_config
from torchtune_lite.config import ConfigError, list_configs, load_config, resolve_config, run_reporting_errors, validate as validate_config

# torchrun flags that take a value / that are switches; anything else before the recipe is an error.
_LAUNCHER_VALUE_FLAGS = {
    "--nproc_per_node", "--nproc-per-node", "--nnodes", "--node_rank", "--node-rank", "--rdzv_endpoint",
    "--rdzv-endpoint", "--rdzv_backend", "--rdzv-backend", "--rdzv_id", "--rdzv-id", "--master_addr",
    "--master-addr", "--master_port", "--master-port", "--max_restarts", "--max-restarts", "--rdzv_conf",
    "--rdzv-conf", "--local_addr", "--local-addr", "--monitor_interval", "--monitor-interval",
}
_LAUNCHER_SWITCHES = {"--standalone"}


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def ls(args: argparse.Namespace) -> None:
    width = max(len(r.name) for r in RECIPES) + 2
    print(f"{'RECIPE':<{width}}CONFIG")
    for recipe in RECIPES:
        for i, config_name in enumerate(recipe.configs):
            print(f"{recipe.name if i == 0 else '':<{width}}{config_name}")


def _source_for(name: str) -> Path:
    recipe = find_recipe(name)
    if recipe is not None:
        return recipe.path
    try:
        return resolve_config(name)
    except ConfigError as err:
        fail(f"'{name}' is neither a recipe nor a config: {err}")


def cp(args: argparse.Namespace) -> None:
    source = _source_for(args.name)
    dest = Path(args.dest)
    if dest.is_dir():
        dest = dest / source.name
    if dest.suffix == "":
        dest = dest.with_suffix(source.suffix)
    if dest.exists() and not args.force:
        fail(f"{dest} already exists: pass --force to overwrite it")
    if not dest.parent.exists():
        if not args.make_parents:
            fail(f"folder {dest.parent} does not exist: create it or pass --make-parents")
        dest.parent.mkdir(parents=True)
    shutil.copyfile(source, dest)
    print(f"Copied {source.name} to {dest}")


def cat(args: argparse.Namespace) -> None:
    try:
        print(resolve_config(args.config).read_text(), end="")
    except ConfigError as err:
        fail(str(err))


def _recipe_schema(recipe_path: Path) -> type:
    namespace = runpy.run_path(str(recipe_path), run_name="torchtune_lite_recipe")
    schemas = [v for v in namespace.values() if isinstance(v, type) and getattr(v, "__dataclass_fields__", None) and v.__module__ == "torchtune_lite_recipe"]
    if not schemas:
        from torchtune_lite.training.finetune import FinetuneConfig

        return namespace.get("RECIPE_CONFIG", FinetuneConfig)
    return schemas[-1]


def validate(args: argparse.Namespace) -> None:
    if args.recipe:
        recipe = find_recipe(args.recipe)
        if recipe is None:
            fail(_unknown_recipe_message(args.recipe))
    else:
        recipe = recipe_for_config(args.config)

    def check() -> None:
        validate_config(load_config(args.config, args.overrides), _recipe_schema(recipe.path))
        print("Config is well-formed!")

    run_reporting_errors(check)


def _unknown_recipe_message(name: str) -> str:
    names = [r.name for r in RECIPES]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    return f"unknown recipe '{name}' ({'close: ' + ', '.join(close) if close else 'known: ' + ', '.join(names)})"


def _split_launcher_args(args: list[str]) -> tuple[list[str], list[str]]:
    launcher: list[str] = []
    i = 0
    while i < len(args) and args[i].startswith("--"):
        flag = args[i].split("=", 1)[0]
        if flag in _LAUNCHER_SWITCHES:
            launcher.append(args[i])
            i += 1
        elif flag in _LAUNCHER_VALUE_FLAGS:
            if "=" in args[i]:
                launcher.append(args[i])
                i += 1
            else:
                if i + 1 >= len(args):
                    fail(f"launcher flag {flag} needs a value")
                launcher += args[i : i + 2]
                i += 2
        else:
            fail(f"unknown launcher flag {flag}: use torchrun flags such as --nproc_per_node N before the recipe")
    return launcher, args[i:]


def run(args: argparse.Namespace) -> None:
    launcher, rest = _split_launcher_args(args.args)
    if not rest:
        fail("tune run needs a recipe: tune run <recipe|path.py> --config <name|path> [key=value ...]")
    recipe_name, recipe_args = rest[0], rest[1:]
    if recipe_name.endswith(".py"):
        recipe_path = Path(recipe_name)
        if not recipe_path.is_file():
            fail(f"recipe file {recipe_path} does not exist")
    else:
        recipe = find_recipe(recipe_name)
        if recipe is None:
            fail(_unknown_recipe_message(recipe_name))
        recipe_path = recipe.path
    if "--config" not in recipe_args and not any(a.startswith("--config=") for a in recipe_args):
        fail(f"tune run {recipe_name} needs --config <name|path> (see `tune ls`)")

    if launcher:
        from torch.distributed.run import get_args_parser, run as torchrun

        torchrun_args = get_args_parser().parse_args([*launcher, str(recipe_path), *recipe_args])
        torchrun(torchrun_args)
        return
    sys.argv = [str(recipe_path), *recipe_args]
    runpy.run_path(str(recipe_path), run_name="__main__")


def download(args: argparse.Namespace) -> None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    try:
        path = snapshot_download(
            args.repo_id,
            local_dir=args.output_dir,
            token=args.hf_token or os.environ.get("HF_TOKEN"),
            ignore_patterns=args.ignore_patterns,
        )
    except GatedRepoError:
        fail(f"{args.repo_id} is gated: accept its license on huggingface.co and pass --hf-token", code=1)
    except RepositoryNotFoundError:
        fail(f"{args.repo_id} was not found on the Hugging Face Hub (or needs --hf-token)", code=1)
    except LocalEntryNotFoundError:
        fail(f"cannot reach the Hugging Face Hub to download {args.repo_id} (offline?): download the files elsewhere and point checkpointer.checkpoint_dir at them", code=1)
    except Exception as err:  # network stacks raise many types; one line is what the user needs
        fail(f"downloading {args.repo_id} failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}", code=1)
    print(f"Downloaded {args.repo_id} to {path}")
