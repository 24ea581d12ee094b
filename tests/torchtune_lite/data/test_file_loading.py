"""load_rows / check_columns on every supported local format, and the errors a user's file can cause."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from torchtune_lite.data import DataFileError, load_rows
from torchtune_lite.data.file_loading import check_columns

ROWS = [
    {"instruction": "Name a fish.", "input": "", "output": "Cod, matey!"},
    {"instruction": "Add", "input": "1, 2", "output": "3"},
]


def test_json_list(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(ROWS, indent=1))
    assert load_rows("json", str(path)) == ROWS


def test_jsonl_with_blank_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n" + json.dumps(ROWS[1]) + "\n")
    assert load_rows("json", str(path)) == ROWS


def test_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('instruction,input,output\nName a fish.,,"Cod, matey!"\nAdd,"1, 2",3\n')
    assert load_rows("csv", str(path)) == ROWS


def test_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    assert load_rows("parquet", str(path)) == ROWS


def test_text(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("para one\n\npara two\n", encoding="utf-8")
    assert load_rows("text", str(path)) == [{"text": "para one\n\npara two\n"}]


def test_malformed_json_names_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n {"a": 1},\n {"a": 2,}\n]\n')
    with pytest.raises(DataFileError, match=r"line 3") as err:
        load_rows("json", str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_malformed_jsonl_names_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n\n{"a": oops}\n{"a": 5}\n')
    with pytest.raises(DataFileError, match=r"JSON Lines at line 4\b") as err:
        load_rows("json", str(path))
    assert str(path) in str(err.value)


def test_json_not_objects(tmp_path):
    path = tmp_path / "d.json"
    path.write_text("[1, 2, 3]")
    with pytest.raises(DataFileError, match="list of objects"):
        load_rows("json", str(path))


@pytest.mark.parametrize(
    "source, name, content",
    [
        ("json", "e.json", ""),
        ("json", "e.json", "[]"),
        ("json", "e.jsonl", "\n\n"),
        ("csv", "e.csv", ""),
        ("csv", "e.csv", "instruction,output\n"),
        ("text", "e.txt", ""),
        ("text", "e.txt", "  \n\n \n"),
    ],
)
def test_empty_file(tmp_path, source, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataFileError, match="no rows"):
        load_rows(source, str(path))


def test_empty_parquet(tmp_path):
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table({"instruction": pa.array([], pa.string())}), path)
    with pytest.raises(DataFileError, match="no rows"):
        load_rows("parquet", str(path))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_rows("json", str(tmp_path / "nope.json"))


def test_unknown_source(tmp_path):
    with pytest.raises(DataFileError, match="not supported"):
        load_rows("xml", str(tmp_path / "d.xml"))


def test_missing_columns_names_found(tmp_path):
    rows = [{"prompt": "a", "response": "b"}]
    with pytest.raises(DataFileError) as err:
        check_columns(rows, ["instruction", "output"], "d.json")
    message = str(err.value)
    assert "'instruction'" in message and "'output'" in message
    assert "'prompt'" in message and "'response'" in message and "column_map" in message


def test_missing_column_in_a_later_row(tmp_path):
    rows = [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"}, {"instruction": "e"}]
    with pytest.raises(DataFileError, match=r"\['output'\] in row 3 \(found \['instruction'\]\)"):
        check_columns(rows, ["instruction", "output"], "d.jsonl")


def test_check_columns_passes():
    check_columns(ROWS, ["instruction", "output"], "d.json")


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
    rows = load_rows(source, str(path))
    assert rows == [{"instruction": "hi", "output": "yo"}]
    check_columns(rows, ["instruction", "output"], str(path))


@pytest.mark.parametrize("source, name", [("csv", "d.csv"), ("json", "d.jsonl"), ("text", "d.txt")])
def test_not_utf8(tmp_path, source, name):
    path = tmp_path / name
    path.write_bytes("instruction,output\ncafé,crème\n".encode("latin-1"))
    with pytest.raises(DataFileError, match="not UTF-8") as err:
        load_rows(source, str(path))
    assert str(path) in str(err.value)


def test_not_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_text("instruction,output\n")
    with pytest.raises(DataFileError, match="not a readable Parquet file") as err:
        load_rows("parquet", str(path))
    assert str(path) in str(err.value) and "\n" not in str(err.value)
