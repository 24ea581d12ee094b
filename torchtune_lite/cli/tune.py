"""`tune`: list, copy, print, validate and run recipes and configs; download weights."""

from __future__ import annotations

import argparse
import sys

from torchtune_lite.cli import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tune", description="torchtune_lite: LoRA/QLoRA fine-tuning of Llama-2 models")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("ls", help="list recipes and the configs each accepts").set_defaults(func=commands.ls)

    cp = sub.add_parser("cp", help="copy a recipe or config to edit and run")
    cp.add_argument("name", help="recipe or config name")
    cp.add_argument("dest", help="destination file or folder")
    cp.add_argument("--force", action="store_true", help="overwrite an existing file")
    cp.add_argument("--make-parents", action="store_true", help="create missing parent folders")
    cp.set_defaults(func=commands.cp)

    cat = sub.add_parser("cat", help="print a config")
    cat.add_argument("config")
    cat.set_defaults(func=commands.cat)

    validate = sub.add_parser("validate", help="check a config (and overrides) against its recipe without running")
    validate.add_argument("config")
    validate.add_argument("overrides", nargs="*", help="key=value overrides")
    validate.add_argument("--recipe", default=None, help="recipe whose settings to check against")
    validate.set_defaults(func=commands.validate)

    run = sub.add_parser(
        "run",
        help="run a recipe: tune run [torchrun flags] <recipe|path.py> --config <name|path> [key=value ...]",
        prefix_chars="\0",  # everything after `run` is parsed by commands.run
    )
    run.add_argument("args", nargs=argparse.REMAINDER)
    run.set_defaults(func=commands.run)

    download = sub.add_parser("download", help="download a model from the Hugging Face Hub")
    download.add_argument("repo_id", help="e.g. meta-llama/Llama-2-7b-hf")
    download.add_argument("--output-dir", required=True)
    download.add_argument("--hf-token", default=None, help="token for gated models (or set HF_TOKEN)")
    download.add_argument("--ignore-patterns", default=None, help="glob of files to skip, e.g. '*.pth'")
    download.set_defaults(func=commands.download)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
