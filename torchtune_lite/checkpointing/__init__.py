"""Weights on disk: checkpointers that load HF/Meta weights of every family into our keys and save crash-safely
back to those layouts, the recipe state, and the NF4 cache (`nf4_cache`: a quantized base saved once)."""

from torchtune_lite.checkpointing._atomic import clean_stale_staging
from torchtune_lite.checkpointing._base import ADAPTER_CONFIG_FILE, ADAPTER_DIR
from torchtune_lite.checkpointing._errors import (
    CheckpointFormatError,
    CheckpointNotFoundError,
    CheckpointWriteError,
    UnsafeCheckpointError,
)
from torchtune_lite.checkpointing._hf_checkpointer import FullModelHFCheckpointer
from torchtune_lite.checkpointing._meta_checkpointer import FullModelMetaCheckpointer
from torchtune_lite.checkpointing._recipe_state import RECIPE_STATE_FILE, load_recipe_state, save_recipe_state

__all__ = [
    "ADAPTER_CONFIG_FILE",
    "ADAPTER_DIR",
    "clean_stale_staging",
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
