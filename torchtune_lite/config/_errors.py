import difflib
from typing import Iterable, Optional


class ConfigError(ValueError):
    """A problem with a config or its overrides; the message is one line naming the key and the fix."""


def closest_name(name: str, candidates: Iterable[str]) -> Optional[str]:
    """The candidate `name` most likely meant: one that differs only in case (`Adamw` -> `AdamW`), else the
    closest spelling, else None."""
    candidates = [str(c) for c in candidates]
    same_but_case = [c for c in candidates if c.lower() == str(name).lower()]
    if same_but_case:
        return same_but_case[0]
    close = difflib.get_close_matches(str(name), candidates, n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = closest_name(name, candidates)
    return f" (did you mean '{close}'?)" if close else ""
