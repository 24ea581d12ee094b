"""Chat data: OpenAI `messages`, ShareGPT `conversations` (with a role map), or any layout through `transform`."""

from __future__ import annotations

from typing import Any, Optional, Union

from torchtune_lite.data import Message, PackedDataset, load_rows
from torchtune_lite.data.columns import lookup
from torchtune_lite.data.conversations import (
    STYLES,
    Transform,
    check_role_map,
    import_transform,
    transformed_messages,
    turns_to_messages,
)
from torchtune_lite.datasets._sft import SFTDataset
from torchtune_lite.datasets._streaming import StreamingSFTDataset, sft_dataset


def chat_dataset(
    tokenizer,
    *,
    source: str = "json",
    data_files: Any = None,
    split: str = "train",
    conversation_column: Optional[str] = None,
    conversation_style: str = "openai",
    role_map: Optional[dict[str, str]] = None,
    transform: Union[str, Transform, None] = None,
    train_on_input: bool = False,
    new_system_prompt: Optional[str] = None,
    packed: bool = False,
    streaming: bool = False,
) -> Union[SFTDataset, PackedDataset, StreamingSFTDataset]:
    """Multi-turn chats; only assistant turns train (in every turn) unless `train_on_input`.

    `conversation_style`: `openai` reads `messages: [{role, content}]`; `sharegpt` reads
    `conversations: [{from, value}]` with roles system/human/gpt, plus `role_map` (`{prompter: user}`).
    `conversation_column` names another column (or path). `transform`: a function (or its dotted path,
    `my_module.to_messages`) from a row to `[{role, content}, ...]`, for any other layout.
    `new_system_prompt` replaces the conversation's own system turns and never trains; `streaming=True` reads
    rows as training uses them (needs `max_steps_per_epoch`).
    """
    if conversation_style not in STYLES:
        raise ValueError(f"dataset.conversation_style={conversation_style!r} is unknown: use one of {sorted(STYLES)}")
    roles = check_role_map(role_map)
    transform_fn = import_transform(transform)
    check_chat_template = getattr(tokenizer, "check_can_render_chats", None)
    if check_chat_template is not None:  # before reading any data: a model folder without a chat template
        check_chat_template()
    column = conversation_column or ("messages" if conversation_style == "openai" else "conversations")
    rows = load_rows(source, data_files, split=split, streaming=streaming)

    def to_messages(row: dict) -> list[Message]:
        if transform_fn is not None:
            return transformed_messages(row, transform_fn, train_on_input=train_on_input, new_system_prompt=new_system_prompt)
        return turns_to_messages(lookup(row, column, "dataset.conversation_column"), column=column, style=conversation_style, role_map=roles,
                                 train_on_input=train_on_input, new_system_prompt=new_system_prompt)

    return sft_dataset(rows, to_messages, tokenizer, str(data_files or source), streaming=streaming, packed=packed)


def sharegpt_dataset(tokenizer, *, role_map: Optional[dict[str, str]] = None, **kwargs: Any) -> Union[SFTDataset, PackedDataset, StreamingSFTDataset]:
    """ShareGPT files (`conversations: [{from, value}]`): `chat_dataset` with `conversation_style="sharegpt"`."""
    return chat_dataset(tokenizer, conversation_style="sharegpt", role_map=role_map, **kwargs)

