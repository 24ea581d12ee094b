"""Column maps: nested paths, strict parsing of user overrides, and text where text is expected."""

from __future__ import annotations

import pytest

from torchtune_lite.data.columns import RowError, check_column_map, lookup, text_at

SEED_TASK = {"id": "seed_task_0", "instruction": "Is there anything I can eat for breakfast?",
             "instances": [{"input": "", "output": "Yes, oatmeal."}], "is_classification": False}


def test_nested_path_reaches_into_lists_and_objects():
    assert lookup(SEED_TASK, "instances.0.output") == "Yes, oatmeal."
    assert lookup(SEED_TASK, "instances.-1.input") == ""
    assert text_at(SEED_TASK, "instances.0.output") == "Yes, oatmeal."


@pytest.mark.parametrize("path, message", [
    ("instances.1.output", "column 'instances.1.output': 'instances' has 1 items, no index 1"),
    ("instances.0.answer", "column 'instances.0.answer': 'instances.0' has no 'answer' (found: ['input', 'output'])"),
    ("instance.0.output", "column 'instance.0.output': the row has no 'instance' (found: ['id', 'instances', 'instruction', 'is_classification'])"),
    ("instruction.0", "column 'instruction.0': 'instruction' is a str, so it has no '0'"),
])
def test_a_missing_step_names_what_was_found(path, message):
    with pytest.raises(RowError) as err:
        lookup(SEED_TASK, path)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("path, message", [
    ("instances", "column 'instances' holds a list where text is expected: map the text inside it with a path (e.g. instances.0.output)"),
    ("is_classification", "column 'is_classification' holds a bool (False) where text is expected"),
])
def test_non_text_where_text_is_expected_is_an_error(path, message):
    with pytest.raises(RowError) as err:
        text_at(SEED_TASK, path)
    assert str(err.value).startswith(message)


def test_optional_column_reads_as_empty():
    assert text_at({"instruction": "x", "input": None}, "input", optional=True) == ""
    assert text_at({"instruction": "x"}, "input", optional=True) == ""


@pytest.mark.parametrize("column_map, message", [
    # `{output:instances}` on a command line: YAML reads it as one key with no value
    ({"output:instances": None}, "dataset.column_map entry 'output:instances' is malformed (no space after the colon): write {output: instances}"),
    ({"output": None}, "dataset.column_map.output=None is malformed: give the file's column name or path"),
    ({"output": ["a"]}, "dataset.column_map.output=['a'] is malformed"),
    ({"answer": "output"}, "dataset.column_map: 'answer' is not a column this data set reads: map one of ['instruction', 'input', 'output']"),
    ("output=instances", "dataset.column_map='output=instances' is malformed: write a mapping such as {output: response}"),
])
def test_malformed_column_map_is_refused(column_map, message):
    with pytest.raises(ValueError) as err:
        check_column_map(column_map, ("instruction", "input", "output"))
    assert str(err.value).startswith(message)


def test_column_map_passes():
    assert check_column_map({"output": "instances.0.output"}, ("instruction", "input", "output")) == {"output": "instances.0.output"}
    assert check_column_map(None, ("output",)) == {}
