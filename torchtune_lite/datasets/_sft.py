"""Supervised fine-tuning data: rows -> messages -> tokens and labels, tokenized once up front."""

from __future__ import annotations

import warnings
from typing import Any, Callable, Optional, Sequence, Union

from torch.utils.data import Dataset

from torchtune_lite.data import CROSS_ENTROPY_IGNORE_IDX, Message, PackedDataset, load_rows
from torchtune_lite.data.file_loading import check_columns
from torchtune_lite.data.splits import select_split


class SFTDataset(Dataset):
    """`{"tokens": list[int], "labels": list[int]}` per sample; labels are the tokens where trained on and
    the ignore index elsewhere, not shifted (the training loop shifts). Samples longer than the tokenizer's
    `max_seq_len` are truncated and samples with nothing to train on are dropped, each counted in one warning."""

    def __init__(self, rows: Sequence[dict[str, Any]], to_messages: Callable[[dict], list[Message]], tokenizer, name: str) -> None:
        self.samples: list[dict[str, list[int]]] = []
        truncated = skipped = 0
        limit = tokenizer.max_seq_len
        for row in rows:
            messages = to_messages(row)
            tokens, mask = tokenizer.tokenize_messages(messages, truncate=False)
            if limit is not None and len(tokens) > limit:
                tokens, mask = tokenizer.truncate(tokens, mask)
                truncated += 1
            labels = [CROSS_ENTROPY_IGNORE_IDX if m else t for t, m in zip(tokens, mask)]
            if len(tokens) < 2 or all(label == CROSS_ENTROPY_IGNORE_IDX for label in labels[1:]):
                skipped += 1
                continue
            self.samples.append({"tokens": tokens, "labels": labels})
        if truncated:
            warnings.warn(f"{name}: {truncated} of {len(rows)} samples were longer than max_seq_len={limit} and were truncated")
        if skipped:
            warnings.warn(f"{name}: skipped {skipped} of {len(rows)} samples with no tokens to train on (all masked or empty)")
        if not self.samples:
            raise ValueError(f"{name}: no samples left to train on: check the data and train_on_input / max_seq_len")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.samples[index]


def read_rows(
    source: str, data_files: str, split: str, required: list[str], column_map: Optional[dict[str, str]] = None
) -> list[dict[str, Any]]:
    """The rows of `split` of one local file, with `column_map` applied and the `required` columns checked."""
    rows = [remap(row, column_map) for row in select_split(load_rows(source, data_files), split)]
    check_columns(rows, required, data_files)
    return rows


def maybe_pack(ds: SFTDataset, tokenizer, packed: bool) -> Union[SFTDataset, PackedDataset]:
    if not packed:
        return ds
    if tokenizer.max_seq_len is None:
        raise ValueError("packed=True needs tokenizer.max_seq_len: set it to the row length to pack into")
    return PackedDataset(ds, tokenizer.max_seq_len, padding_idx=tokenizer.pad_id)


def remap(row: dict[str, Any], column_map: Optional[dict[str, str]]) -> dict[str, Any]:
    """`column_map` maps our column names to the file's: {"instruction": "prompt"}."""
    if not column_map:
        return row
    # A mapped column the file lacks is left out, so check_columns reports it with the columns found.
    renamed = {ours: row[theirs] for ours, theirs in column_map.items() if theirs in row}
    return {k: v for k, v in row.items() if k not in column_map.values()} | renamed  # the mapping wins
