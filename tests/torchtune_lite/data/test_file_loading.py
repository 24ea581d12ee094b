"""load_rows over `datasets.load_dataset`: every local format, split slicing, streaming, and the one-line
errors a user's file or source can cause."""

from __future__ import annotations

import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from torchtune_lite.data import DataFileError, load_rows
from torchtune_lite.data.file_loading import check_data_files, parse_split

ROWS = [
    {"instruction": "Name a fish.", "input": "", "output": "Cod, matey!"},
    {"instruction": "Add", "input": "1, 2", "output": "3"},
]


def _write(tmp_path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return str(path)


def test_json_list(tmp_path):
    assert list(load_rows("json", _write(tmp_path, "d.json", json.dumps(ROWS, indent=1)))) == ROWS


def test_jsonl_with_blank_lines(tmp_path):
    path = _write(tmp_path, "d.jsonl", json.dumps(ROWS[0]) + "\n\n" + json.dumps(ROWS[1]) + "\n")
    assert list(load_rows("json", path)) == ROWS


def test_csv_cells_stay_text(tmp_path):
    # pandas alone would read `3` as a number and the empty cell as NaN
    path = _write(tmp_path, "d.csv", 'instruction,input,output\nName a fish.,,"Cod, matey!"\nAdd,"1, 2",3\n')
    assert list(load_rows("csv", path)) == ROWS


def test_parquet_and_arrow(tmp_path):
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "d.parquet")
    assert list(load_rows("parquet", str(tmp_path / "d.parquet"))) == ROWS
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    arrow = sorted((tmp_path / "saved").glob("*.arrow"))
    assert list(load_rows("arrow", [str(p) for p in arrow])) == ROWS


def test_text_by_paragraph(tmp_path):
    path = _write(tmp_path, "d.txt", "para one\nline two\n\npara two\n")
    assert [r["text"].strip() for r in load_rows("text", path, sample_by="paragraph")] == ["para one\nline two", "para two"]


def test_local_folder(tmp_path):
    (tmp_path / "data").mkdir()
    _write(tmp_path / "data", "train.jsonl", "\n".join(json.dumps(r) for r in ROWS))
    assert list(load_rows(str(tmp_path / "data"))) == ROWS


@pytest.mark.parametrize("split, expected", [("train", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), ("train[:90%]", list(range(9))),
                                             ("train[90%:]", [9]), ("train[2:4]", [2, 3]), ("train[-2:]", [8, 9])])
def test_split_slices(tmp_path, split, expected):
    path = _write(tmp_path, "d.jsonl", "\n".join(json.dumps({"i": i}) for i in range(10)))
    assert [r["i"] for r in load_rows("json", path, split=split)] == expected


def test_streaming_reads_lazily_and_slices_by_rows(tmp_path):
    path = _write(tmp_path, "d.jsonl", "\n".join(json.dumps({"i": i}) for i in range(10)))
    rows = load_rows("json", path, split="train[3:6]", streaming=True)
    assert isinstance(rows, datasets.IterableDataset)
    assert [r["i"] for r in rows] == [3, 4, 5]
    with pytest.raises(DataFileError, match="a stream's length is unknown, so slice by rows"):
        load_rows("json", path, split="train[:90%]", streaming=True)


@pytest.mark.parametrize("split, message", [
    ("train[:0]", "selects no rows"), ("validation", "has no split 'validation'"), ("train[:90]%", "is not understood"),
    ("train[:200%]", "not a percentage between"),
])
def test_bad_split(tmp_path, split, message):
    path = _write(tmp_path, "d.jsonl", "\n".join(json.dumps({"i": i}) for i in range(10)))
    with pytest.raises(DataFileError, match=message) as err:
        load_rows("json", path, split=split)
    assert "\n" not in str(err.value)


def test_parse_split():
    assert parse_split("train[10:20]") == ("train", ("10", "20"))
    assert parse_split("train[:90%]") == ("train", (None, "90%"))
    assert parse_split("train[10:]", streaming=True) == ("train", (10, None))


def test_malformed_json_names_line(tmp_path):
    path = _write(tmp_path, "d.json", '[\n {"a": 1},\n {"a": 2 "b": 3}\n]\n')
    with pytest.raises(DataFileError, match=r"line 3") as err:
        load_rows("json", path)
    assert path in str(err.value) and "\n" not in str(err.value)


def test_malformed_jsonl_names_line(tmp_path):
    path = _write(tmp_path, "d.jsonl", '{"a": 1}\n{"a": 2}\n\n{"a": oops}\n{"a": 5}\n')
    with pytest.raises(DataFileError, match=r"JSON Lines at line 4\b") as err:
        load_rows("json", path)
    assert path in str(err.value)


@pytest.mark.parametrize("source, name, content", [
    ("json", "e.json", ""), ("json", "e.json", "[]"), ("json", "e.jsonl", "\n\n"), ("csv", "e.csv", ""),
    ("csv", "e.csv", "instruction,output\n"), ("text", "e.txt", ""),
])
def test_empty_file(tmp_path, source, name, content):
    with pytest.raises(DataFileError, match="no rows"):
        load_rows(source, _write(tmp_path, name, content))


def test_empty_parquet(tmp_path):
    pq.write_table(pa.table({"instruction": pa.array([], pa.string())}), tmp_path / "e.parquet")
    with pytest.raises(DataFileError, match="no rows"):
        load_rows("parquet", str(tmp_path / "e.parquet"))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist: point it at a local json file"):
        load_rows("json", str(tmp_path / "nope.json"))
    with pytest.raises(DataFileError, match="dataset.source=json reads local files: set dataset.data_files"):
        check_data_files("json", None)


def test_split_counts_kept_rows(tmp_path):
    path = _write(tmp_path, "d.jsonl", "\n".join(json.dumps({"i": i}) for i in range(10)))
    odd = load_rows("json", path, split="train[:2]", keep=lambda r: r["i"] % 2 == 1)
    assert [r["i"] for r in odd] == [1, 3]


def test_hub_name_offline_is_one_line(tmp_path, monkeypatch):
    # this machine has no route to the Hub; the error comes at once, not after the client's minute of retries.
    # CI sets HF_HUB_OFFLINE=1 (which skips the check and reads the Hub cache): unset it to test the check.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    with pytest.raises(DataFileError) as err:
        load_rows("tatsu-lab/alpaca")
    message = str(err.value)
    assert message.startswith("dataset.source=tatsu-lab/alpaca is not a file type") and "pass a local file" in message


@pytest.mark.parametrize("source, name", [("csv", "d.csv"), ("json", "d.json"), ("json", "d.jsonl")])
def test_utf8_byte_order_mark(tmp_path, source, name):
    path = tmp_path / name
    if name == "d.csv":
        content = "instruction,output\nhi,yo\n"
    elif name == "d.json":
        content = json.dumps([{"instruction": "hi", "output": "yo"}])
    else:
        content = json.dumps({"instruction": "hi", "output": "yo"}) + "\n"
    path.write_text(content, encoding="utf-8-sig")  # as spreadsheet and Windows tools save it
    assert list(load_rows(source, str(path))) == [{"instruction": "hi", "output": "yo"}]


@pytest.mark.parametrize("source, name", [("csv", "d.csv"), ("json", "d.jsonl"), ("text", "d.txt")])
def test_not_utf8(tmp_path, source, name):
    path = tmp_path / name
    path.write_bytes("instruction,output\ncafé,crème\n".encode("latin-1"))
    with pytest.raises(DataFileError, match="not UTF-8") as err:
        load_rows(source, str(path))
    assert str(path) in str(err.value)


def test_not_parquet(tmp_path):
    path = _write(tmp_path, "d.parquet", "instruction,output\n")
    with pytest.raises(DataFileError, match="not readable as a parquet file") as err:
        load_rows("parquet", path)
    assert path in str(err.value) and "\n" not in str(err.value)
