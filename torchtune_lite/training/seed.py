"""Seeding and the RNG state saved with a checkpoint, so a resumed run draws the same numbers."""

import random
from typing import Optional

import numpy as np
import torch


def set_seed(seed: Optional[int]) -> int:
    """Seeds python, numpy and torch; `None` picks a seed (returned, so it can be logged and saved)."""
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def get_rng_state() -> dict:
    """Only tensors, ints and lists: loadable with `torch.load(weights_only=True)`."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
