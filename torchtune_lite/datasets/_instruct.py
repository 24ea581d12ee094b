"""Instruction data in the Alpaca layout (instruction, optional input, output), at any path in a row."""

from __future__ import annotations

from typing import Any, Optional, Union

from torchtune_lite.data import Message, PackedDataset, format_alpaca_prompt, load_rows
from torchtune_lite.data.columns import check_column_map, text_at
from torchtune_lite.datasets._sft import SFTDataset
from torchtune_lite.datasets._streaming import StreamingSFTDataset, sft_dataset

COLUMNS = ("instruction", "input", "output")


def instruct_dataset(
    tokenizer,
    *,
    source: str = "json",
    data_files: Any = None,
    split: str = "train",
    column_map: Optional[dict[str, str]] = None,
    train_on_input: bool = False,
    new_system_prompt: Optional[str] = None,
    packed: bool = False,
    streaming: bool = False,
) -> Union[SFTDataset, PackedDataset, StreamingSFTDataset]:
    """The prompt (Alpaca template around instruction and input) is masked unless `train_on_input`.

    `source`/`data_files`/`split` are `datasets.load_dataset`'s (`split="train[:90%]"` to train,
    `"train[90%:]"` to validate). `column_map` maps our columns to the file's, by name or by path into
    nested fields: `{output: instances.0.output}`. `new_system_prompt` is put before every prompt and never
    trained on (prompts at generation time must then carry it too). `streaming=True` reads rows as training
    uses them (for files bigger than memory; needs `max_steps_per_epoch`).
    """
    mapped = check_column_map(column_map, COLUMNS)
    columns = {c: c for c in COLUMNS} | mapped
    rows = load_rows(source, data_files, split=split, streaming=streaming)

    def to_messages(row: dict) -> list[Message]:
        prompt = format_alpaca_prompt(text_at(row, columns["instruction"]), text_at(row, columns["input"], optional="input" not in mapped))
        system = [Message("system", new_system_prompt, masked=True)] if new_system_prompt else []
        return system + [
            Message("user", prompt, masked=not train_on_input),
            Message("assistant", text_at(row, columns["output"])),
        ]

    return sft_dataset(rows, to_messages, tokenizer, str(data_files or source), streaming=streaming, packed=packed,
                       prompt_format="alpaca")


def alpaca_dataset(
    tokenizer,
    *,
    source: str = "json",
    data_files: Any = None,
    split: str = "train",
    column_map: Optional[dict[str, str]] = None,
    train_on_input: bool = True,
    packed: bool = False,
    streaming: bool = False,
) -> Union[SFTDataset, PackedDataset]:
    """Alpaca-format data (torchtune's default trains on the prompt too)."""
    return instruct_dataset(tokenizer, source=source, data_files=data_files, split=split, column_map=column_map,
                            train_on_input=train_on_input, packed=packed, streaming=streaming)
