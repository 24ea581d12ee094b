"""Reading a data set's rows with Hugging Face `datasets.load_dataset`, with one-line errors that name the fix.

`source` is any `load_dataset` path: a file type (json, csv, parquet, text, arrow) read from `data_files`,
a local folder, or a Hub name. `split` slices as `datasets` does (`train[:90%]`); `streaming=True` reads
rows as they are used, so a file bigger than memory trains without being read whole.
"""

from __future__ import annotations

import glob
import json
import re
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

FILE_TYPES = ("json", "csv", "parquet", "text", "arrow")
DataFiles = Union[str, Sequence[str], None]

# "train", "validation", "train[:90%]", "train[90%:]", "train[10%:20%]", "train[:1000]", "train[1000:]"
_SPLIT = re.compile(r"^(\w+)(?:\[\s*(-?\d+%?)?\s*:\s*(-?\d+%?)?\s*\])?$")


class DataFileError(ValueError):
    pass


def load_rows(
    source: str,
    data_files: DataFiles = None,
    *,
    split: str = "train",
    streaming: bool = False,
    keep: Optional[Callable[[dict], bool]] = None,
    **options: Any,
):
    """The rows of `split`: a `datasets.Dataset`, or a `datasets.IterableDataset` when `streaming`.

    `keep` filters rows before the split's slice is taken (so `train[:2]` means the first two kept rows);
    `options` go to `load_dataset` (for example `sample_by="paragraph"` for text). CSV cells are read as
    the text written in them (no number or NaN guessing), as a fine-tuning sample's fields are text.
    """
    import datasets

    check_data_files(source, data_files)
    name, bounds = parse_split(split, streaming=streaming)
    if source == "csv":
        options = {"features": _csv_as_text(data_files), "keep_default_na": False, **options}
    path = _local_folder(source)
    where = str(data_files) if data_files is not None else source
    kwargs: dict[str, Any] = {"data_files": _as_list(data_files)} if data_files is not None else {}
    datasets.disable_progress_bars()  # a bar per file on every run says nothing a user needs
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its parser-fallback messages repeat our error line
    if source not in FILE_TYPES and path is None:
        check_hub_reachable(source)
    try:
        rows = datasets.load_dataset(str(path) if path else source, split=name, streaming=streaming, **kwargs, **options)
    except ValueError as err:
        if "split" in str(err).lower() and "unknown" in str(err).lower() or "Bad split" in str(err):
            raise DataFileError(f"dataset.split={split!r}: {where} has no split {name!r}: use 'train' (a local file is one split)") from None
        raise DataFileError(_reason(where, source, data_files, err)) from None
    except Exception as err:  # datasets wraps parser errors in many types; one line is what helps
        raise DataFileError(_reason(where, source, data_files, err)) from None
    if keep is not None:
        rows = rows.filter(keep)
    if streaming:
        start, stop = bounds
        rows = rows.skip(start) if start else rows
        return rows.take(stop - (start or 0)) if stop is not None else rows
    if len(rows) == 0:
        raise DataFileError(f"dataset.data_files {where} holds no rows: the data set is empty")
    start, stop, _ = slice(*(_row_index(b, len(rows)) for b in bounds)).indices(len(rows))
    if stop <= start:
        raise DataFileError(f"dataset.split={split!r} selects no rows of the {len(rows)} in {where}: widen the slice")
    return rows if (start, stop) == (0, len(rows)) else rows.select(range(start, stop))


def parse_split(split: str, *, streaming: bool = False) -> tuple[str, tuple[Optional[str], Optional[str]]]:
    """`train[10:20]` -> ("train", ("10", "20")); `train[:90%]` -> ("train", (None, "90%")). A stream's
    length is unknown, so streaming takes row counts from its start only."""
    match = _SPLIT.match(str(split).strip())
    if match is None:
        raise DataFileError(
            f"dataset.split={split!r} is not understood: use 'train' or a slice like 'train[:90%]', 'train[90%:]', 'train[:1000]'"
        )
    name, *bounds = match.groups()
    for bound in bounds:
        if bound is not None and bound.endswith("%") and not -100 <= int(bound[:-1]) <= 100:
            raise DataFileError(f"dataset.split: {bound} is not a percentage between -100% and 100%")
    if streaming:
        if any(b and b.endswith("%") for b in bounds):
            raise DataFileError(f"dataset.split={split!r}: a stream's length is unknown, so slice by rows (train[:1000]), not by percent")
        if any(b and b.startswith("-") for b in bounds):
            raise DataFileError(f"dataset.split={split!r}: a stream's length is unknown, so count rows from its start (train[1000:])")
        return name, tuple(int(b) if b is not None else None for b in bounds)
    return name, tuple(bounds)


def _row_index(bound: Optional[str], n: int) -> Optional[int]:
    if bound is None:
        return None
    return round(n * int(bound[:-1]) / 100) if bound.endswith("%") else int(bound)


def check_data_files(source: str, data_files: DataFiles, key: str = "dataset.data_files") -> None:
    """A file type needs `data_files` that exist; checked before a run builds anything."""
    node = key.rsplit(".", 1)[0]
    if source in FILE_TYPES:
        if data_files is None:
            raise DataFileError(f"{node}.source={source} reads local files: set {key} to the {source} file(s)")
        for pattern in _as_list(data_files):
            if not glob.glob(str(Path(pattern).expanduser())):
                raise FileNotFoundError(f"{key} {pattern} does not exist: point it at a local {source} file")
    elif source.startswith((".", "/", "~")) and _local_folder(source) is None:
        raise FileNotFoundError(f"{node}.source {source} does not exist: point it at a local folder of data files")


def _csv_as_text(data_files: DataFiles):
    """Features reading every column of the CSV header as text (pandas would turn `3` into a number)."""
    import csv

    import datasets

    first = sorted(glob.glob(_as_list(data_files)[0]))[0]
    try:
        with open(first, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
    except UnicodeDecodeError as err:
        raise DataFileError(f"{first}: not UTF-8 text (byte {err.start}): re-save the file as UTF-8") from None
    if not header:
        raise DataFileError(f"dataset.data_files {first} holds no rows: the data set is empty")
    return datasets.Features({name: datasets.Value("string") for name in header})


def _local_folder(source: str) -> Optional[Path]:
    path = Path(source).expanduser()
    return path if source not in FILE_TYPES and path.is_dir() else None


def _as_list(data_files: DataFiles) -> list[str]:
    if isinstance(data_files, (str, Path)):
        return [str(Path(data_files).expanduser())]
    return [str(Path(f).expanduser()) for f in data_files]


def _innermost(err: BaseException) -> BaseException:
    # datasets wraps the parser's error; the innermost one names what is wrong
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__
    return err


def _first_line(err: BaseException) -> str:
    err = _innermost(err)
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def check_hub_reachable(source: str) -> None:
    """A Hub name on a machine without internet fails now, in one line, not after a minute of retries.
    With HF_HUB_OFFLINE=1 the Hub cache is used and nothing is checked."""
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE"):
        return
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError as err:
        raise DataFileError(
            f"dataset.source={source} is not a file type ({', '.join(FILE_TYPES)}) or a local folder, and the Hub "
            f"({host}) cannot be reached ({err.strerror or err}): download the data and pass a local file "
            "(dataset.source=json dataset.data_files=/path/to/data.jsonl), or set HF_HUB_OFFLINE=1 to use the Hub cache"
        ) from None


def _reason(where: str, source: str, data_files: DataFiles, err: BaseException) -> str:
    # the parsers' ways of saying a file holds nothing
    if isinstance(_innermost(err), StopIteration) or any(
            hint in str(_innermost(err)) for hint in ("at least one example", "BatchSize must be greater than 0",
                                                     "corresponds to no data")):
        return f"dataset.data_files {where} holds no rows: the data set is empty"
    if isinstance(_innermost(err), UnicodeDecodeError):
        return f"{where}: not UTF-8 text (byte {_innermost(err).start}): re-save the file as UTF-8"
    if source == "json" and isinstance(data_files, (str, Path)):
        line = _malformed_json_line(Path(data_files).expanduser())
        if line:
            return f"{where}: {line}"
    kind = f"a {source} file" if source in FILE_TYPES else "a data folder"
    return f"{where}: not readable as {kind} ({_first_line(err)}): check the file's format and dataset.source"


def _malformed_json_line(path: Path) -> Optional[str]:
    """Where a JSON or JSON Lines file first breaks (datasets' own message names no line); read only on failure."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        return f"not UTF-8 text (byte {err.start}): re-save the file as UTF-8"
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            return f"malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        if not all(isinstance(r, dict) for r in rows):
            return "expected a JSON list of objects or one object per line"
        return None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            return f"malformed JSON Lines at line {lineno}: {err.msg}"
        if not isinstance(row, dict):
            return f"line {lineno} is not a JSON object: expected a JSON list of objects or one object per line"
    return None
