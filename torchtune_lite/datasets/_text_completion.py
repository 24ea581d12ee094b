"""Plain text for continued pretraining: every token is trained on."""

from __future__ import annotations

from typing import Union

from torchtune_lite.data import Message, PackedDataset, load_rows
from torchtune_lite.data.file_loading import check_columns
from torchtune_lite.data.splits import select_split
from torchtune_lite.datasets._sft import SFTDataset, maybe_pack


def text_completion_dataset(
    tokenizer,
    *,
    source: str = "text",
    data_files: str,
    split: str = "train",
    column: str = "text",
    packed: bool = False,
    add_eos: bool = True,
) -> Union[SFTDataset, PackedDataset]:
    """One sample per row; with `source="text"`, one sample per blank-line-separated paragraph.
    `split` slices the samples (paragraphs for text files): `"train[:95%]"`, `"train[95%:]"`."""
    rows = load_rows(source, data_files)
    if source == "text":
        rows = [{"text": part.strip()} for part in rows[0]["text"].split("\n\n") if part.strip()]
    rows = select_split(rows, split)
    check_columns(rows, [column], data_files)
    role = "assistant" if add_eos else "user"  # the tokenizer appends EOS after assistant turns
    ds = SFTDataset(rows, lambda row: [Message(role, str(row[column]))], tokenizer, name=str(data_files))
    return maybe_pack(ds, tokenizer, packed)
