"""Seeding and the RNG state saved with a checkpoint, so a resumed run draws the same numbers."""

import random
from typing import Optional

import torch

from torchtune_lite.training.distributed import broadcast_object

try:  # numpy is not a torch dependency; seed it when present (data code may use it)
    import numpy as np
except ImportError:  # pragma: no cover - numpy is installed in every environment we test
    np = None


def set_seed(seed: Optional[int]) -> int:
    """Seeds python's `random`, numpy and torch (CPU and every CUDA device).

    `None` picks a fresh seed and returns it, so it can be logged and saved for an exact rerun.
    """
    if seed is None:
        seed = draw_seed()
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed={seed!r} must be a non-negative integer below 2**63 (or null to pick one)")
    random.seed(seed)
    if np is not None:
        np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def draw_seed() -> int:
    """A fresh seed from the OS's entropy source (not from the RNGs it will seed)."""
    return random.SystemRandom().randrange(2**31)


def seed_for_run(configured: Optional[int], saved: Optional[int] = None) -> int:
    """The seed every rank of a run uses: the one a resumed checkpoint saved, else `configured`, else one
    rank 0 draws and broadcasts. One seed for all ranks matters beyond reproducibility: it fixes the data
    sampler's shuffle, and ranks that shuffled differently would see overlapping shares of the data."""
    seed = saved if saved is not None else configured
    return broadcast_object(draw_seed() if seed is None else seed)


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
    """Restores what `get_rng_state` captured. CUDA states are restored for the devices this host has: a run
    saved on 8 GPUs resumes on 2 (the states of devices beyond the visible count are not needed)."""
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
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
