"""Seeding and the RNG state saved with a checkpoint, so a resumed run draws the same numbers."""

import random
from typing import Optional

import torch

try:  # numpy is not a torch dependency; seed it when present (data code may use it)
    import numpy as np
except ImportError:  # pragma: no cover - numpy is installed in every environment we test
    np = None


def set_seed(seed: Optional[int]) -> int:
    """Seeds python's `random`, numpy and torch (CPU and every CUDA device).

    `None` picks a fresh seed and returns it, so it can be logged and saved for an exact rerun.
    """
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed={seed!r} must be a non-negative integer below 2**63 (or null to pick one)")
    random.seed(seed)
    if np is not None:
        np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def get_rng_state() -> dict:
    """Every RNG's state as tensors, strings and numbers only, so it loads with `torch.load(weights_only=True)`.

    Keys: `python`, `numpy` (if installed), `torch` (CPU), `cuda` (one state per device, if CUDA is in use).
    """
    version, internal, gauss = random.getstate()
    state = {"python": [version, list(internal), gauss], "torch": torch.get_rng_state()}
    if np is not None:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restores what `get_rng_state` captured; a CUDA state is restored only if CUDA is available."""
    missing = [k for k in ("python", "torch") if k not in state]
    if missing:
        raise ValueError(f"RNG state lacks {missing}: pass the dict saved by get_rng_state")
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if np is not None and "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
