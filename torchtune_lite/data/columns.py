"""Reaching a sample's fields in a row: column maps with nested paths (`instances.0.output`), checked strictly.

A converter raises `RowError` naming the column or key; the data set adds the file and row number, so
the user reads `seed_tasks.jsonl row 7: column 'output' ...` and can open the file at that row.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence


class RowError(ValueError):
    """One row cannot become a sample; the message names the column or key and the fix."""


def check_column_map(column_map: Optional[Mapping[str, Any]], ours: Optional[Sequence[str]],
                     key: str = "dataset.column_map") -> dict[str, str]:
    """`column_map` as {our column: the file's column or path}, refusing what would silently mis-train
    (`ours=None` checks the shape only, for a config check that does not know the data set's columns).

    `{output:instances}` on a command line parses to `{"output:instances": None}` (YAML needs a space after
    the colon), and a value that is not a string names no column: both are errors here.
    """
    if column_map is None:
        return {}
    if not isinstance(column_map, Mapping):
        raise ValueError(f"{key}={column_map!r} is malformed: write a mapping such as {{output: response}}")
    checked: dict[str, str] = {}
    for name, path in column_map.items():
        if path is None and ":" in str(name):
            ours_part, _, theirs = str(name).partition(":")
            raise ValueError(
                f"{key} entry {name!r} is malformed (no space after the colon): write {{{ours_part}: {theirs}}}"
            )
        if ours is not None and name not in ours:
            raise ValueError(f"{key}: {name!r} is not a column this data set reads: map one of {list(ours)}")
        if not isinstance(path, str) or not path:
            raise ValueError(f"{key}.{name}={path!r} is malformed: give the file's column name or path (instances.0.output)")
        checked[str(name)] = path
    return checked


def lookup(row: Mapping[str, Any], path: str, setting: str = "dataset.column_map") -> Any:
    """The value at `path` in `row`: dots step into objects, integers index lists (`instances.0.output`).
    A missing step raises RowError listing the keys found there and naming the `setting` that picks the path."""
    value: Any = row
    walked: list[str] = []
    for step in path.split("."):
        if isinstance(value, Mapping):
            # datasets gives every row every column, None where a row lacked it: None reads as absent
            if value.get(step) is None:
                found = sorted(k for k, v in value.items() if v is not None)
                where = f"'{'.'.join(walked)}'" if walked else "the row"
                raise RowError(f"column '{path}': {where} has no '{step}' (found: {found}): fix the row or set {setting}")
            value = value[step]
        elif isinstance(value, list) and step.lstrip("-").isdigit():
            if not -len(value) <= int(step) < len(value):
                raise RowError(f"column '{path}': '{'.'.join(walked)}' has {len(value)} items, no index {step}")
            value = value[int(step)]
        else:
            raise RowError(f"column '{path}': '{'.'.join(walked)}' is a {type(value).__name__}, so it has no '{step}'")
        walked.append(step)
    return value


def text_at(row: Mapping[str, Any], path: str, *, optional: bool = False, setting: str = "dataset.column_map") -> str:
    """The text at `path`; a list, object or number where text is expected is an error (its repr would be
    trained on silently). `optional` columns that are absent or None read as ""."""
    try:
        value = lookup(row, path, setting)
    except RowError:
        if optional:
            return ""
        raise
    if isinstance(value, (list, dict)):
        raise RowError(f"column '{path}' holds a {type(value).__name__} where text is expected: "
                       f"map the text inside it with a path (e.g. {path}.0.output)")
    if not isinstance(value, str):
        kind = type(value).__name__
        raise RowError(f"column '{path}' holds {'an' if kind[0] in 'aeiou' else 'a'} {kind} ({value!r}) where text is expected: "
                       "store it as a string in the file")
    return value
