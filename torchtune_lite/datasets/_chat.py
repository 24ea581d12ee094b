"""Chat data: OpenAI-style lists of {"role", "content"} messages."""

from __future__ import annotations

from torchtune_lite.data import Message, load_rows
from torchtune_lite.data.file_loading import DataFileError, check_columns
from torchtune_lite.datasets._sft import SFTDataset, maybe_pack

_ROLES = ("system", "user", "assistant")


def chat_dataset(
    tokenizer, *, source: str = "json", data_files: str, conversation_column: str = "messages", train_on_input: bool = False, packed: bool = False
):
    """Only assistant turns are trained on unless `train_on_input`."""
    rows = load_rows(source, data_files)
    check_columns(rows, [conversation_column], data_files)

    def to_messages(row: dict) -> list[Message]:
        messages = []
        for turn in row[conversation_column]:
            if not isinstance(turn, dict) or "content" not in turn:
                raise DataFileError(
                    f"{data_files}: each turn in {conversation_column} must be an object with role and content, got {turn!r}"
                )
            role = turn.get("role")
            if role not in _ROLES:
                raise DataFileError(f"{data_files}: unknown role {role!r} in {conversation_column}: use one of {_ROLES}")
            messages.append(Message(role, str(turn["content"]), masked=role != "assistant" and not train_on_input))
        return messages

    return maybe_pack(SFTDataset(rows, to_messages, tokenizer, name=str(data_files)), tokenizer, packed)
