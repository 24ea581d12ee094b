"""Chat data: OpenAI-style lists of {"role", "content"} messages."""

from __future__ import annotations

from typing import Optional, Union

from torchtune_lite.data import Message, PackedDataset
from torchtune_lite.data.file_loading import DataFileError
from torchtune_lite.data.messages import ROLES
from torchtune_lite.datasets._sft import SFTDataset, maybe_pack, read_rows


def chat_dataset(
    tokenizer,
    *,
    source: str = "json",
    data_files: str,
    split: str = "train",
    conversation_column: str = "messages",
    train_on_input: bool = False,
    new_system_prompt: Optional[str] = None,
    packed: bool = False,
) -> Union[SFTDataset, PackedDataset]:
    """Only assistant turns are trained on unless `train_on_input`. `new_system_prompt` replaces the
    conversation's own system messages and is never trained on; `split` slices the file (`"train[:90%]"`)."""
    check_chat_template = getattr(tokenizer, "check_can_render_chats", None)
    if check_chat_template is not None:  # before reading any data: a model folder without a chat template
        check_chat_template()
    rows = read_rows(source, data_files, split, [conversation_column])

    def to_messages(row: dict) -> list[Message]:
        turns = row[conversation_column]
        if not isinstance(turns, list):
            raise DataFileError(
                f"{data_files}: {conversation_column} must be a list of {{role, content}} objects, got {type(turns).__name__}"
            )
        messages = [Message("system", new_system_prompt, masked=True)] if new_system_prompt else []
        for turn in turns:
            if not isinstance(turn, dict) or "content" not in turn:
                raise DataFileError(
                    f"{data_files}: each turn in {conversation_column} must be an object with role and content, got {turn!r}"
                )
            role = turn.get("role")
            if role not in ROLES:
                raise DataFileError(f"{data_files}: unknown role {role!r} in {conversation_column}: use one of {ROLES}")
            if role == "system" and new_system_prompt:
                continue
            messages.append(Message(role, str(turn["content"]), masked=role != "assistant" and not train_on_input))
        return messages

    return maybe_pack(SFTDataset(rows, to_messages, tokenizer, name=str(data_files)), tokenizer, packed)
