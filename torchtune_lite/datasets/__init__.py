"""Data set builders for local files (JSON, JSON Lines, CSV, Parquet, text)."""

from torchtune_lite.datasets._chat import chat_dataset
from torchtune_lite.datasets._instruct import alpaca_dataset, instruct_dataset
from torchtune_lite.datasets._sft import SFTDataset
from torchtune_lite.datasets._text_completion import text_completion_dataset

__all__ = ["SFTDataset", "alpaca_dataset", "chat_dataset", "instruct_dataset", "text_completion_dataset"]
