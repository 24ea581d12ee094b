"""`tune cp <recipe|config> <dest>`: copy a shipped recipe or config to edit and run."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from torchtune_lite.cli._catalog import find_recipe
from torchtune_lite.cli._errors import fail
from torchtune_lite.config import ConfigError, resolve_config


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cp", help="copy a recipe or config to edit and run")
    parser.add_argument("name", help="recipe name (see `tune ls`) or config name")
    parser.add_argument("dest", help="destination file or folder")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    parser.add_argument("--make-parents", action="store_true", help="create missing parent folders")
    parser.set_defaults(func=main)


def _source(name: str) -> Path:
    recipe = find_recipe(name)
    if recipe is not None:
        if not recipe.installed:
            fail(f"recipe '{recipe.name}' is listed but {recipe.file} is not installed")
        return recipe.path
    try:
        return resolve_config(name)
    except ConfigError as err:
        fail(f"'{name}' is neither a recipe nor a config: {err}")


def _destination(dest_arg: str, source: Path) -> Path:
    """A folder (existing, or written with a trailing slash) gets the source's file name; a name
    without a suffix gets the source's suffix."""
    dest = Path(dest_arg)
    if dest.is_dir() or dest_arg.endswith((os.sep, "/")):
        return dest / source.name
    return dest if dest.suffix else dest.with_suffix(source.suffix)


def main(args: argparse.Namespace) -> None:
    source = _source(args.name)
    dest = _destination(args.dest, source)
    if dest.exists() and not args.force:
        fail(f"{dest} already exists: pass --force to overwrite it")
    try:
        if not dest.parent.exists():
            if not args.make_parents:
                fail(f"folder {dest.parent} does not exist: create it or pass --make-parents")
            dest.parent.mkdir(parents=True)
        shutil.copyfile(source, dest)
    except OSError as err:
        fail(f"cannot write {dest} ({err.strerror or err}): choose a writable destination", code=1)
    print(f"Copied {source.name} to {dest}")
