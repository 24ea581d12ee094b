"""The entry point of a recipe script: `--config NAME [key=value ...]`, checked before anything runs."""

from __future__ import annotations

import dataclasses
import errno
import functools
import os
import sys
import warnings
from typing import Callable

from torchtune_lite.config._errors import ConfigError
from torchtune_lite.config._load import load_config
from torchtune_lite.config._validate import as_settings, validate

# Errors a user causes (a bad path, a bad file, a bad value) print one line; anything else is a bug and
# keeps its traceback. TUNE_TRACEBACK=1 shows tracebacks for user errors too.
USER_ERRORS = (ConfigError, FileNotFoundError, FileExistsError, ValueError, PermissionError)
# A full disk or quota, a file-size limit or a read-only mount is the machine's state, not a bug: one line too.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def is_user_error(err: BaseException) -> bool:
    return isinstance(err, USER_ERRORS) or (isinstance(err, OSError) and err.errno in _DISK_ERRNOS)


_RECIPE_USAGE = "usage: <recipe> --config <name|path> [key=value ...]"


def parse_recipe_args(argv: list[str]) -> tuple[str, list[str]]:
    """`--config NAME a.b=1 ~c` -> ("NAME", ["a.b=1", "~c"]). Parsed by hand so every mistake is one line."""
    config_name, overrides = None, []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in ("-h", "--help"):
            print(_RECIPE_USAGE)
            sys.exit(0)
        if token == "--config":
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ConfigError("--config needs a value: --config <name|path>")
            config_name, i = argv[i + 1], i + 2
            continue
        if token.startswith("--config="):
            config_name = token.partition("=")[2]
        elif token.startswith("--"):
            raise ConfigError(f"unknown option '{token}': overrides are key=value, without dashes")
        else:
            overrides.append(token)
        i += 1
    if not config_name:
        raise ConfigError("missing --config: pass --config <name|path> (see `tune ls`)")
    return config_name, overrides


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def show_warnings_as_one_line() -> None:
    """Warnings print as `warning: <message>` once per message, not with the file, line number and source
    line of the `warnings.warn` call (which say nothing to a user). `python -W` settings are kept."""
    warnings.formatwarning = _one_line_warning
    if not sys.warnoptions:
        warnings.simplefilter("once")
        warnings.filterwarnings("ignore", category=DeprecationWarning)


def run_reporting_errors(fn: Callable[[], None]) -> None:
    """Runs `fn`; a user error becomes one `error:` line on stderr and exit 2 (config) or 1 (other)."""
    show_warnings_as_one_line()
    try:
        fn()
    except Exception as err:
        if not is_user_error(err) or os.environ.get("TUNE_TRACEBACK"):
            raise
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(2 if isinstance(err, ConfigError) else 1)


def parse(schema: type) -> Callable:
    """Decorates `recipe_main(cfg)`: loads the config from sys.argv, validates it against `schema`, and runs
    `recipe_main` with it as a `schema` instance."""

    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"config.parse: schema must be a dataclass type, got {schema!r}")

    def decorator(recipe_main: Callable) -> Callable:
        @functools.wraps(recipe_main)
        def wrapper() -> None:
            def run() -> None:
                name, overrides = parse_recipe_args(sys.argv[1:])
                recipe_main(as_settings(validate(load_config(name, overrides), schema), schema))

            run_reporting_errors(run)

        wrapper.config_schema = schema  # `tune validate` reads it to check a config without running
        return wrapper

    return decorator
