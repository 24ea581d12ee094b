"""Reading rows from local JSON, JSONL, CSV, Parquet and text files, with errors that name the line."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

SOURCES = ("json", "csv", "parquet", "text")


class DataFileError(ValueError):
    pass


def load_rows(source: str, data_files: str) -> list[dict[str, Any]]:
    """All rows of `data_files` as dicts. `source` json reads a JSON list or JSON Lines (by content).
    Files are read as UTF-8 with or without a byte-order mark (spreadsheet exports often start with one)."""
    check_data_files(source, data_files)
    path = Path(data_files)
    try:
        rows = _read(source, path)
    except UnicodeDecodeError as err:
        raise DataFileError(f"{path}: not UTF-8 text (byte {err.start}): re-save the file as UTF-8") from None
    if not rows:
        raise DataFileError(f"dataset.data_files {path} holds no rows: the data set is empty")
    return rows


def check_data_files(source: str, data_files: str, key: str = "dataset.data_files") -> None:
    """`source` is one we read and `data_files` is a file (checked before a run builds anything)."""
    if source not in SOURCES:
        raise DataFileError(f"{key.rsplit('.', 1)[0]}.source={source} is not supported: use one of {', '.join(SOURCES)}")
    path = Path(str(data_files)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{key} {data_files} does not exist: point it at a local {source} file")


def _read(source: str, path: Path) -> list[dict[str, Any]]:
    if source == "json":
        rows = _load_json(path)
    elif source == "csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    elif source == "parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataFileError("reading parquet needs pyarrow: pip install pyarrow") from None
        try:
            rows = pq.read_table(path).to_pylist()
        except (OSError, ValueError) as err:  # pyarrow.ArrowInvalid is a ValueError
            raise DataFileError(f"{path}: not a readable Parquet file ({str(err).splitlines()[0]})") from None
    else:
        text = path.read_text(encoding="utf-8-sig")
        rows = [{"text": text}] if text.strip() else []
    return rows


def _load_json(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataFileError(f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    else:
        rows = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataFileError(f"{path}: malformed JSON Lines at line {lineno}: {err.msg}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DataFileError(f"{path}: expected a JSON list of objects or one object per line")
    return rows


def check_columns(rows: list[dict[str, Any]], required: list[str], data_files: str) -> None:
    """Every row must have the `required` columns (JSON Lines rows need not share keys)."""
    if not rows:
        raise DataFileError(f"dataset.data_files {data_files} holds no rows: the data set is empty")
    for index, row in enumerate(rows):
        missing = [c for c in required if c not in row]
        if missing:
            where = "" if index == 0 else f" in row {index + 1}"
            raise DataFileError(
                f"{data_files}: missing column(s) {missing}{where} (found {sorted(row)}): "
                "rename them or set dataset.column_map"
            )
