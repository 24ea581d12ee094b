"""Instruction data in the Alpaca layout (instruction, optional input, output)."""

from __future__ import annotations

from typing import Optional, Union

from torchtune_lite.data import Message, PackedDataset, format_alpaca_prompt
from torchtune_lite.datasets._sft import SFTDataset, maybe_pack, read_rows


def instruct_dataset(
    tokenizer,
    *,
    source: str = "json",
    data_files: str,
    split: str = "train",
    column_map: Optional[dict[str, str]] = None,
    train_on_input: bool = False,
    new_system_prompt: Optional[str] = None,
    packed: bool = False,
) -> Union[SFTDataset, PackedDataset]:
    """The prompt (Alpaca template around instruction and input) is masked unless `train_on_input`.

    `column_map` maps our columns to the file's (`{"output": "response"}`); `split` slices the file
    (`"train[:90%]"` to train, `"train[90%:]"` to validate); `new_system_prompt` is put before every
    prompt and never trained on (prompts at generation time must then carry it too).
    """
    rows = read_rows(source, data_files, split, ["instruction", "output"], column_map)

    def to_messages(row: dict) -> list[Message]:
        prompt = format_alpaca_prompt(str(row["instruction"]), str(row.get("input") or ""))
        system = [Message("system", new_system_prompt, masked=True)] if new_system_prompt else []
        return system + [
            Message("user", prompt, masked=not train_on_input),
            Message("assistant", str(row["output"])),
        ]

    return maybe_pack(SFTDataset(rows, to_messages, tokenizer, name=str(data_files)), tokenizer, packed)


def alpaca_dataset(
    tokenizer,
    *,
    source: str = "json",
    data_files: str,
    split: str = "train",
    train_on_input: bool = True,
    packed: bool = False,
) -> Union[SFTDataset, PackedDataset]:
    """Alpaca-format data from a local file (torchtune's default trains on the prompt too)."""
    return instruct_dataset(
        tokenizer, source=source, data_files=data_files, split=split, train_on_input=train_on_input, packed=packed
    )
