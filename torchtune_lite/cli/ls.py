"""`tune ls`: the recipes and the configs each one accepts."""

from __future__ import annotations

import argparse

from torchtune_lite.cli._catalog import installed_recipes


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ls", help="list recipes and the configs each accepts")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    recipes = installed_recipes()
    width = max([len("RECIPE")] + [len(r.name) for r in recipes]) + 2
    print(f"{'RECIPE':<{width}}CONFIG")
    for recipe in recipes:
        for i, config_name in enumerate(recipe.configs or ("-",)):
            print(f"{recipe.name if i == 0 else '':<{width}}{config_name}")
