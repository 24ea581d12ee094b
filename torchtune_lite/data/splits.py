"""Train/validation splits of one local file, written like Hugging Face slices: `train[:90%]`."""

from __future__ import annotations

import re
from typing import Any, Optional

# "train", "train[:90%]", "train[90%:]", "train[10%:20%]", "train[:1000]", "train[1000:]"
_SPLIT = re.compile(r"^train(?:\[\s*(-?\d+%?)?\s*:\s*(-?\d+%?)?\s*\])?$")


class SplitError(ValueError):
    pass


def select_split(rows: list[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    """The rows `split` names, in file order. A local file is one split, `train`; slice it by percent or
    row count so training and validation can come from one file without overlap (`train[:90%]` and
    `train[90%:]`). The file's order is kept, so shuffle the file first if it is sorted."""
    match = _SPLIT.match(split.strip())
    if match is None:
        raise SplitError(
            f"dataset.split={split!r} is not understood: use 'train' or a slice like 'train[:90%]', 'train[90%:]', 'train[:1000]'"
        )
    start, stop = (_bound(b, len(rows)) for b in match.groups())
    chosen = rows[start:stop]
    if not chosen:
        raise SplitError(f"dataset.split={split!r} selects no rows of the {len(rows)} in the file: widen the slice")
    return chosen


def _bound(bound: Optional[str], n: int) -> Optional[int]:
    if bound is None:
        return None
    if bound.endswith("%"):
        percent = int(bound[:-1])
        if not -100 <= percent <= 100:
            raise SplitError(f"dataset.split: {bound} is not a percentage between -100% and 100%")
        return round(n * percent / 100)
    return int(bound)
