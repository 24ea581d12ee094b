"""`tune`: list, copy, print, validate and run recipes and configs; download weights; plot runs' curves;
estimate a config's memory.

Each subcommand lives in its own module with `add_parser(subparsers)` and `main(args)`.
"""

from __future__ import annotations

import sys

from torchtune_lite.cli import cat, cp, download, estimate, ls, plot, run, validate
from torchtune_lite.cli._errors import ArgumentParser, fail
from torchtune_lite.config import ConfigError

_SUBCOMMANDS = (ls, cp, cat, validate, run, download, plot, estimate)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="tune", description="torchtune_lite: LoRA/QLoRA fine-tuning of Llama-2 models")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="{ls,cp,cat,validate,run,download,plot,estimate}")
    for command in _SUBCOMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    """The `tune` entry point. User errors print one `error:` line and exit 2; recipes keep their exit codes."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # `tune` alone: show what it can do
        parser.print_help()
        return
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse cannot take positionals after an option (`validate CFG --recipe R a=1`); overrides
        # are the only thing that may land here.
        if args.command not in ("validate", "estimate") or any(token.startswith("-") for token in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides += extra
    try:
        args.func(args)
    except ConfigError as err:
        fail(str(err).splitlines()[0])


if __name__ == "__main__":
    main()
