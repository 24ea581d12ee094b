"""Messages, prompt templates, loading through `datasets`, column maps, conversations, collate and packing."""

from torchtune_lite.data.collate import (
    CROSS_ENTROPY_IGNORE_IDX,
    block_causal_mask,
    padded_collate_packed,
    padded_collate_sft,
)
from torchtune_lite.data.file_loading import DataFileError, load_rows
from torchtune_lite.data.messages import Message
from torchtune_lite.data.packing import PackedDataset
from torchtune_lite.data.prompt_templates import (
    PROMPT_TEMPLATES,
    PromptTemplate,
    format_alpaca_prompt,
    llama2_chat_template,
)

__all__ = [
    "CROSS_ENTROPY_IGNORE_IDX",
    "DataFileError",
    "Message",
    "PROMPT_TEMPLATES",
    "PackedDataset",
    "PromptTemplate",
    "block_causal_mask",
    "format_alpaca_prompt",
    "llama2_chat_template",
    "load_rows",
    "padded_collate_packed",
    "padded_collate_sft",
]
