"""text_completion_dataset: paragraphs of a text file, or a column of a table; every token trained on."""

from __future__ import annotations

import pytest

from torchtune_lite.data import DataFileError, PackedDataset
from torchtune_lite.datasets import text_completion_dataset

TEXT = "The white rabbit eats carrots.\nIt lives in a burrow.\n\n\n  The red wolf howls at night.  \n\n \n\nThe end.\n"


def test_paragraphs(tokenizer, tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    ds = text_completion_dataset(tokenizer, data_files=str(path))
    paragraphs = ["The white rabbit eats carrots.\nIt lives in a burrow.", "The red wolf howls at night.", "The end."]
    assert len(ds) == 3
    for sample, paragraph in zip(ds, paragraphs):
        assert sample["tokens"] == tokenizer.encode(paragraph, add_bos=True, add_eos=True)
        assert sample["labels"] == sample["tokens"]


def test_without_eos(tokenizer, tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    ds = text_completion_dataset(tokenizer, data_files=str(path), add_eos=False)
    assert ds[2]["tokens"] == tokenizer.encode("The end.", add_bos=True, add_eos=False)
    assert ds[2]["labels"] == ds[2]["tokens"]  # not masked though the role is "user"


def test_json_column(tokenizer, write_json):
    ds = text_completion_dataset(tokenizer, source="json", data_files=write_json("t.json", [{"body": "a fish"}, {"body": "a cat"}]), column="body")
    assert ds[1]["tokens"] == tokenizer.encode("a cat")


def test_missing_column(tokenizer, write_json):
    with pytest.raises(DataFileError, match=r"t.json row 1: column 'text': the row has no 'text' \(found: \['body'\]\): fix the row or set dataset.column"):
        text_completion_dataset(tokenizer, source="json", data_files=write_json("t.json", [{"body": "a"}]))


def test_blank_text_file(tokenizer, tmp_path):
    path = tmp_path / "blank.txt"
    path.write_text("\n \n\n")
    with pytest.raises(DataFileError, match="no rows"):
        text_completion_dataset(tokenizer, data_files=str(path))


def test_packed_bundled_corpus_excerpt(make_tokenizer, assets, tmp_path):
    excerpt = (assets / "corpus.txt").read_text(encoding="utf-8")[:4000]
    path = tmp_path / "excerpt.txt"
    path.write_text(excerpt)
    tokenizer = make_tokenizer(64)
    with pytest.warns(UserWarning, match="truncated"):
        ds = text_completion_dataset(tokenizer, data_files=str(path), packed=True)
    assert isinstance(ds, PackedDataset) and len(ds) > 1
    for row in ds:
        assert len(row["tokens"]) == 64 and sum(row["seq_lens"]) == 64
        starts = [sum(row["seq_lens"][:i]) for i in range(len(row["seq_lens"]))]
        assert all(row["input_pos"][s] == 0 for s in starts)


def test_split_counts_paragraphs(tokenizer, tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    head = text_completion_dataset(tokenizer, data_files=str(path), split="train[:2]")
    tail = text_completion_dataset(tokenizer, data_files=str(path), split="train[2:]")
    assert (len(head), len(tail)) == (2, 1)
    assert tail[0]["tokens"] == tokenizer.encode("The end.")
