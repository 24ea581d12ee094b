"""The resumable part of a run (optimizer, scheduler, progress, RNG states), saved and loaded safely.

The state must be made of tensors, dicts, lists, tuples, ints, floats, bools, strings and None, so it
loads with `weights_only=True` (RNG states are uint8 tensors, which qualify).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from torchtune_lite.checkpointing._atomic import atomic_write
from torchtune_lite.checkpointing._errors import (
    CheckpointFormatError,
    CheckpointNotFoundError,
    UnsafeCheckpointError,
)

RECIPE_STATE_FILE = "recipe_state.pt"


def save_recipe_state(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically (temp file, fsync, rename)."""
    atomic_write(Path(path), lambda tmp: _torch_save(state, tmp))


def _torch_save(state: dict[str, Any], tmp: Path) -> None:
    # Through a Python file object: a full disk then surfaces as the OSError behind torch's error
    # (saving to a path reports only "unexpected pos"), so the failure names its cause.
    with open(tmp, "wb") as f:
        torch.save(state, f)


def load_recipe_state(path: Path) -> dict[str, Any]:
    """Read a recipe state written by `save_recipe_state`, refusing pickles that would run code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"recipe state {path} not found: point recipe_checkpoint at the {RECIPE_STATE_FILE} of a complete "
            "checkpoint, or start without resume_from_checkpoint"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"{path} holds objects that would run code when loaded (refused): save only tensors, dicts, "
            "lists, numbers and strings in the recipe state"
        ) from err
    except (RuntimeError, EOFError) as err:
        raise CheckpointFormatError(f"{path} is truncated or corrupt ({err}): resume from an earlier checkpoint") from err
    if not isinstance(state, dict):
        raise CheckpointFormatError(f"{path} holds a {type(state).__name__}, not a recipe-state dict: resume from a checkpoint saved by torchtune_lite")
    return state
