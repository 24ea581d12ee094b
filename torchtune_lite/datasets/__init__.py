"""Data set builders over Hugging Face `datasets`: instruct (Alpaca), chat (OpenAI, ShareGPT, `transform`), text; preference pairs."""

from torchtune_lite.datasets._chat import chat_dataset, sharegpt_dataset
from torchtune_lite.datasets._instruct import alpaca_dataset, instruct_dataset
from torchtune_lite.datasets._preference import PreferenceDataset, preference_dataset
from torchtune_lite.datasets._sft import SFTDataset
from torchtune_lite.datasets._text_completion import text_completion_dataset

__all__ = [
    "PreferenceDataset",
    "SFTDataset",
    "alpaca_dataset",
    "chat_dataset",
    "instruct_dataset",
    "preference_dataset",
    "sharegpt_dataset",
    "text_completion_dataset",
]
