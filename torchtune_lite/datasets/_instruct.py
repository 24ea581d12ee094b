"""Instruction data in the Alpaca layout (instruction, optional input, output)."""

from __future__ import annotations

from typing import Optional

from torchtune_lite.data import Message, format_alpaca_prompt, load_rows
from torchtune_lite.data.file_loading import check_columns
from torchtune_lite.datasets._sft import SFTDataset, maybe_pack, remap


def instruct_dataset(
    tokenizer,
    *,
    source: str = "json",
    data_files: str,
    column_map: Optional[dict[str, str]] = None,
    train_on_input: bool = False,
    packed: bool = False,
):
    """The prompt (Alpaca template around instruction and input) is masked unless `train_on_input`."""
    rows = [remap(row, column_map) for row in load_rows(source, data_files)]
    check_columns(rows, ["instruction", "output"], data_files)

    def to_messages(row: dict) -> list[Message]:
        prompt = format_alpaca_prompt(str(row["instruction"]), str(row.get("input") or ""))
        return [
            Message("user", prompt, masked=not train_on_input),
            Message("assistant", str(row["output"])),
        ]

    return maybe_pack(SFTDataset(rows, to_messages, tokenizer, name=str(data_files)), tokenizer, packed)


def alpaca_dataset(
    tokenizer,
    *,
    source: str = "json",
    data_files: str,
    train_on_input: bool = True,
    packed: bool = False,
):
    """Alpaca-format data from a local file (torchtune's default trains on the prompt too)."""
    return instruct_dataset(tokenizer, source=source, data_files=data_files, train_on_input=train_on_input, packed=packed)
