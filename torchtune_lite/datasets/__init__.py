"""Data set builders over Hugging Face `datasets`: instruct (Alpaca), chat (OpenAI, ShareGPT, `transform`), text."""

from torchtune_lite.datasets._chat import chat_dataset, sharegpt_dataset
from torchtune_lite.datasets._instruct import alpaca_dataset, instruct_dataset
from torchtune_lite.datasets._sft import SFTDataset
from torchtune_lite.datasets._text_completion import text_completion_dataset

__all__ = ["SFTDataset", "alpaca_dataset", "chat_dataset", "instruct_dataset", "sharegpt_dataset", "text_completion_dataset"]
