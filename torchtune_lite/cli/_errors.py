"""How `tune` reports a user's mistake: one `error:` line on stderr, no traceback."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


def fail(message: str, code: int = 2) -> NoReturn:
    """Exit 2 for a usage/config mistake, 1 for a failure outside the user's command line."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (argparse prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see `{self.prog} --help`)")
