"""`tune run [torchrun flags] <recipe|path.py> --config <name|path> [key=value ...]`.

Runs the recipe in this process, as `python recipe.py ...` would; with torchrun flags it hands the recipe
to `torch.distributed.run` (also in this process, which then starts one worker per rank), so `tune` stays
the one command for one device or many.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from pathlib import Path

from torchtune_lite.cli._catalog import find_recipe, unknown_recipe_message
from torchtune_lite.cli._errors import fail

USAGE = "usage: tune run [torchrun flags] <recipe|path.py> --config <name|path> [key=value ...]"

# torchrun switches that change what gets executed; tune always passes a recipe file.
_REFUSED_FLAGS = {"-m", "--module", "--no-python", "--no_python", "--run-path", "--run_path"}
# With none of these, a multi-process run is single-node: use torchrun's --standalone rendezvous, which
# picks a free port instead of the fixed 29500 (two runs on one machine would otherwise collide).
_RENDEZVOUS_FLAGS = {
    "--standalone", "--rdzv-endpoint", "--rdzv_endpoint", "--rdzv-backend", "--rdzv_backend",
    "--master-addr", "--master_addr", "--master-port", "--master_port",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a recipe: tune run [torchrun flags] <recipe|path.py> --config <name|path> [key=value ...]",
        prefix_chars="\0",  # everything after `run` is split by split_launcher_args, not argparse
        add_help=False,
    )
    parser.add_argument("args", nargs=argparse.REMAINDER)
    parser.set_defaults(func=main)


def _torchrun_flags() -> dict[str, bool]:
    """torchrun's option strings -> whether each takes a value, read from torchrun's own parser."""
    from torch.distributed.run import get_args_parser

    flags = {}
    for action in get_args_parser()._actions:  # argparse has no public accessor for its actions
        for option in action.option_strings:
            flags[option] = action.nargs != 0
    return flags


def split_launcher_args(args: list[str]) -> tuple[list[str], list[str]]:
    """`--nproc_per_node 2 recipe.py --config x` -> (["--nproc_per_node", "2"], ["recipe.py", "--config", "x"])."""
    if not args or not args[0].startswith("-"):
        return [], args
    flags = _torchrun_flags()
    launcher: list[str] = []
    i = 0
    while i < len(args) and args[i].startswith("-"):
        flag, has_inline_value = args[i].split("=", 1)[0], "=" in args[i]
        if flag in ("-h", "--help"):
            print(USAGE)
            sys.exit(0)
        if flag in _REFUSED_FLAGS:
            fail(f"torchrun flag {flag} is not supported by tune run: it runs the recipe file itself")
        if flag not in flags:
            fail(f"unknown launcher flag {flag}: put torchrun flags (such as --nproc_per_node 2) before the recipe, and --config after it")
        if flags[flag] and not has_inline_value:
            if i + 1 >= len(args):
                fail(f"launcher flag {flag} needs a value")
            launcher += args[i : i + 2]
            i += 2
        else:
            launcher.append(args[i])
            i += 1
    return launcher, args[i:]


def _single_node(launcher: list[str]) -> bool:
    given = {a.split("=", 1)[0] for a in launcher}
    if given & _RENDEZVOUS_FLAGS:
        return False
    for i, arg in enumerate(launcher):
        if arg.split("=", 1)[0] == "--nnodes":
            value = arg.split("=", 1)[1] if "=" in arg else launcher[i + 1]
            return value in ("1", "1:1")
    return True


def _recipe_path(name: str) -> Path:
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            fail(f"recipe file {path} does not exist")
        return path
    recipe = find_recipe(name)
    if recipe is None:
        fail(unknown_recipe_message(name))
    if not recipe.installed:
        fail(f"recipe '{recipe.name}' is listed but {recipe.file} is not installed")
    return recipe.path


def _launch(launcher: list[str], recipe_path: Path, recipe_args: list[str]) -> None:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.run import get_args_parser, run as torchrun

    if _single_node(launcher):
        launcher = [*launcher, "--standalone"]
    torchrun_args = get_args_parser().parse_args([*launcher, str(recipe_path), *recipe_args])
    if "OMP_NUM_THREADS" not in os.environ:
        # Share the cores among this node's workers (torchrun would otherwise pin each to 1 thread and warn).
        workers = torchrun_args.nproc_per_node
        workers = int(workers) if str(workers).isdigit() else 1
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    try:
        torchrun(torchrun_args)
    except ChildFailedError as err:
        # Each worker has printed its own error; torchrun stopped the others. Name the rank that failed first.
        rank, failure = err.get_first_failure()
        code = failure.exitcode if failure.exitcode > 0 else 128 - failure.exitcode  # killed by signal N -> 128+N
        how = f"was killed by signal {-failure.exitcode}" if failure.exitcode < 0 else f"exited with code {failure.exitcode}"
        print(f"error: rank {rank} {how}; the other ranks were stopped (see rank {rank}'s output above)", file=sys.stderr, flush=True)
        sys.exit(code)
    except RendezvousError as err:
        fail(
            f"the distributed job could not form ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}): "
            "check that every node runs the same command with the same --rdzv-endpoint and --nnodes, and that the endpoint is reachable",
            code=1,
        )
    except SignalException as err:
        # The workers got the signal too; they finish their step, save and stop. Exit as a signalled process would.
        sys.exit(128 + int(err.sigval))

def main(args: argparse.Namespace) -> None:
    launcher, rest = split_launcher_args(args.args)
    if not rest:
        fail(f"tune run needs a recipe; {USAGE}")
    if rest[0] in ("-h", "--help"):
        print(USAGE)
        return
    recipe_path = _recipe_path(rest[0])
    recipe_args = rest[1:]
    if not any(a == "--config" or a.startswith("--config=") for a in recipe_args):
        fail(f"tune run {rest[0]} needs --config <name|path> (see `tune ls`)")
    if launcher:
        _launch(launcher, recipe_path, recipe_args)
        return
    # As `python recipe.py ...` would: the recipe's argv, and its folder importable.
    sys.argv = [str(recipe_path), *recipe_args]
    sys.path.insert(0, str(recipe_path.resolve().parent))
    runpy.run_path(str(recipe_path), run_name="__main__")
