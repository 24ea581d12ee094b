"""Checkpointers: load HF/Meta Llama-2 weights into our keys, save crash-safely back to those layouts."""

from torchtune_lite.training.checkpointing._errors import (
    CheckpointFormatError,
    CheckpointNotFoundError,
    CheckpointWriteError,
    UnsafeCheckpointError,
)
from torchtune_lite.training.checkpointing._hf_checkpointer import FullModelHFCheckpointer
from torchtune_lite.training.checkpointing._meta_checkpointer import FullModelMetaCheckpointer
from torchtune_lite.training.checkpointing._recipe_state import RECIPE_STATE_FILE, load_recipe_state, save_recipe_state

__all__ = [
    "FullModelHFCheckpointer",
    "FullModelMetaCheckpointer",
    "load_recipe_state",
    "save_recipe_state",
    "RECIPE_STATE_FILE",
    "CheckpointFormatError",
    "CheckpointNotFoundError",
    "CheckpointWriteError",
    "UnsafeCheckpointError",
]
