"""Plain text for continued pretraining: every token is trained on."""

from __future__ import annotations

from typing import Any, Union

from torchtune_lite.data import Message, PackedDataset, load_rows
from torchtune_lite.data.columns import text_at
from torchtune_lite.datasets._sft import SFTDataset
from torchtune_lite.datasets._streaming import StreamingSFTDataset, sft_dataset


def text_completion_dataset(
    tokenizer,
    *,
    source: str = "text",
    data_files: Any = None,
    split: str = "train",
    column: str = "text",
    packed: bool = False,
    streaming: bool = False,
    add_eos: bool = True,
) -> Union[SFTDataset, PackedDataset, StreamingSFTDataset]:
    """One sample per row; with `source="text"`, one sample per blank-line-separated paragraph. `split`
    slices the samples (`"train[:95%]"`, `"train[95%:]"`); a sample longer than max_seq_len is cut at its end."""
    options = {"sample_by": "paragraph", "keep": lambda row: bool(row["text"].strip())} if source == "text" else {}
    rows = load_rows(source, data_files, split=split, streaming=streaming, **options)
    role = "assistant" if add_eos else "user"  # the tokenizer appends EOS after assistant turns

    def to_messages(row: dict) -> list[Message]:
        return [Message(role, text_at(row, column, setting="dataset.column").strip())]

    return sft_dataset(rows, to_messages, tokenizer, str(data_files or source), streaming=streaming, packed=packed,
                       keep_answer=False, prompt_format="text")
