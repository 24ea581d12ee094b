"""`tune cat <config>`: print a shipped config's YAML."""

from __future__ import annotations

import argparse

from torchtune_lite.config import resolve_config


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cat", help="print a config")
    parser.add_argument("config", help="config name (7B_qlora, llama2/7B_qlora) or YAML path")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    print(resolve_config(args.config).read_text(), end="")
