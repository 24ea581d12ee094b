"""select_split: Hugging Face-style slices of one file's rows, disjoint and covering when paired."""

from __future__ import annotations

import pytest

from torchtune_lite.data import SplitError, select_split

ROWS = [{"i": i} for i in range(10)]


@pytest.mark.parametrize(
    "split, expected",
    [
        ("train", list(range(10))),
        ("train[:]", list(range(10))),
        ("train[:90%]", list(range(9))),
        ("train[90%:]", [9]),
        ("train[20%:40%]", [2, 3]),
        ("train[:3]", [0, 1, 2]),
        ("train[7:]", [7, 8, 9]),
        ("train[-2:]", [8, 9]),
        ("train[-10%:]", [9]),
        (" train[ : 50% ] ", [0, 1, 2, 3, 4]),
    ],
)
def test_slices(split, expected):
    assert [r["i"] for r in select_split(ROWS, split)] == expected


@pytest.mark.parametrize("n", [11, 101, 1083])
@pytest.mark.parametrize("percent", [10, 33, 90, 95])
def test_paired_splits_partition_the_rows(n, percent):
    rows = [{"i": i} for i in range(n)]
    head = select_split(rows, f"train[:{percent}%]")
    tail = select_split(rows, f"train[{percent}%:]")
    assert head + tail == rows


@pytest.mark.parametrize("split", ["validation", "test", "train[", "train[::2]", "train[a:b]", "train[:90.5%]"])
def test_not_understood(split):
    with pytest.raises(SplitError, match="is not understood") as err:
        select_split(ROWS, split)
    assert "train[:90%]" in str(err.value) and "\n" not in str(err.value)


def test_bad_percentage():
    with pytest.raises(SplitError, match="150%"):
        select_split(ROWS, "train[:150%]")


@pytest.mark.parametrize("split", ["train[10:]", "train[:1%]", "train[50%:50%]"])
def test_empty_selection(split):
    with pytest.raises(SplitError, match="selects no rows of the 10"):
        select_split(ROWS, split)
