"""The entry point of a recipe script: `--config NAME [key=value ...]`, checked before anything runs."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Callable

from torchtune_lite.config._errors import ConfigError
from torchtune_lite.config._load import load_config
from torchtune_lite.config._validate import validate

# Errors a user causes (a bad path, a bad file, a bad value) print one line; anything else is a bug and
# keeps its traceback. TUNE_TRACEBACK=1 shows tracebacks for user errors too.
USER_ERRORS = (ConfigError, FileNotFoundError, FileExistsError, ValueError, PermissionError)


def parse_recipe_args(argv: list[str]) -> tuple[str, list[str]]:
    parser = argparse.ArgumentParser(add_help=True)
    parser.add_argument("--config", required=True, help="config name (7B_qlora, llama2/7B_qlora) or YAML path")
    args, overrides = parser.parse_known_args(argv)
    for token in overrides:
        if token.startswith("--"):
            raise ConfigError(f"unknown option '{token}': overrides are key=value, without dashes")
    return args.config, overrides


def run_reporting_errors(fn: Callable[[], None]) -> None:
    try:
        fn()
    except USER_ERRORS as err:
        if os.environ.get("TUNE_TRACEBACK"):
            raise
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(2 if isinstance(err, ConfigError) else 1)


def parse(schema: type) -> Callable:
    """Decorates `recipe_main(cfg)`: loads the config from sys.argv, validates it against `schema`, runs."""

    def decorator(recipe_main: Callable) -> Callable:
        @functools.wraps(recipe_main)
        def wrapper() -> None:
            def run() -> None:
                name, overrides = parse_recipe_args(sys.argv[1:])
                cfg = validate(load_config(name, overrides), schema)
                recipe_main(cfg)

            run_reporting_errors(run)

        return wrapper

    return decorator
