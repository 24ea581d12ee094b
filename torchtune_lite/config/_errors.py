import difflib
from typing import Iterable


class ConfigError(ValueError):
    """A problem with a config or its overrides; the message is one line naming the key and the fix."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
