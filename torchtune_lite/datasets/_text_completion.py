"""Plain text for continued pretraining: every token is trained on."""

from __future__ import annotations

from torchtune_lite.data import Message, load_rows
from torchtune_lite.data.file_loading import check_columns
from torchtune_lite.datasets._sft import SFTDataset, maybe_pack


def text_completion_dataset(
    tokenizer, *, source: str = "text", data_files: str, column: str = "text", packed: bool = False, add_eos: bool = True
):
    """One sample per row; with `source="text"`, one sample per blank-line-separated paragraph."""
    rows = load_rows(source, data_files)
    if source == "text":
        rows = [{"text": part.strip()} for part in rows[0]["text"].split("\n\n") if part.strip()]
    check_columns(rows, [column], data_files)
    role = "assistant" if add_eos else "user"  # the tokenizer appends EOS after assistant turns
    ds = SFTDataset(rows, lambda row: [Message(role, str(row[column]))], tokenizer, name=str(data_files))
    return maybe_pack(ds, tokenizer, packed)
