"""What keyword arguments a `_component_` accepts, read from its signature."""

from __future__ import annotations

import inspect
from typing import Any


def accepted_keywords(target: Any) -> tuple[set[str], bool]:
    """Keyword names `target` accepts, and whether it takes **kwargs."""
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return set(), True
    names = {n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    return names, var_kw
