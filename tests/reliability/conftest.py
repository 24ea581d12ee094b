"""The fault suite runs the real `tune` entry point on the tiny random base of the recipe tests.

Runs that must be a real process (a signal, SIGKILL, a file-size limit) go through `run_faulty`, a
subprocess with one fault injected (see faults.py); the rest call `tune`'s `main` in this process,
which is the same code path without paying the ~5 s import of a fresh interpreter each time. Both run
torch on one thread: the tiny model is fastest so (several times faster on a busy machine), and runs
compared bitwise must use the same thread count.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.recipes.conftest import TuneResult, error_lines, hf_checkpoint, read_losses, tiny_overrides, tune  # noqa: F401 (a fixture; re-exports)

REPO = Path(__file__).resolve().parents[2]


def run_lora(checkpoint_dir: Path, output_dir: Path, *extra: str, **settings) -> TuneResult:
    return tune("run", "lora_finetune_single_device", "--config", "tiny/lora",
                *tiny_overrides(checkpoint_dir, output_dir, **settings), *extra)


def dpo_overrides(checkpoint_dir: Path, output_dir: Path, **settings) -> list[str]:
    """tiny/lora_dpo (the bundled preference pairs) on the random base, validated every 2 steps on one batch."""
    return tiny_overrides(checkpoint_dir, output_dir, **{"run_val_every_n_steps": 2, "max_val_batches": 1, **settings})


def run_dpo(checkpoint_dir: Path, output_dir: Path, *extra: str, **settings) -> TuneResult:
    return tune("run", "lora_dpo_single_device", "--config", "tiny/lora_dpo",
                *dpo_overrides(checkpoint_dir, output_dir, **settings), *extra)


def full_overrides(checkpoint_dir: Path, output_dir: Path, **settings) -> list[str]:
    """tiny/pretrain (full fine-tune) on the random base: no scheduler, unpacked data, no generation."""
    overrides = [o for o in tiny_overrides(checkpoint_dir, output_dir, **settings)
                 if not o.startswith(("generate_after_training", "lr_scheduler"))]
    return [*overrides, "~lr_scheduler", "dataset.packed=False", "generate_after_training=null"]


def run_full(checkpoint_dir: Path, output_dir: Path, *extra: str, **settings) -> TuneResult:
    return tune("run", "full_finetune_single_device", "--config", "tiny/pretrain",
                *full_overrides(checkpoint_dir, output_dir, **settings), *extra)


def run_faulty(fault: str, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    """`tune ARGS` in a child process with `fault` injected (see faults.py), on one thread like `tune`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("TUNE_TRACEBACK", None)
    return subprocess.run([sys.executable, "-m", "tests.reliability.faults", fault, *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)


def saved_checkpoints(output_dir: Path) -> list[str]:
    """Names of checkpoint folders in `output_dir`, complete or not, hidden (staging) ones included."""
    if not output_dir.is_dir():
        return []
    return sorted(p.name for p in output_dir.iterdir() if p.is_dir() and p.name.lstrip(".").startswith(("epoch_", "step_")))


def tensor_files(folder: Path) -> dict[str, bytes]:
    """Every safetensors file under `folder` (merged model shards and the adapter), by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.safetensors"))}


def assert_checkpoint_whole(checkpoint: Path) -> dict:
    """Every file the recipe state names is there (and nothing else), and the weights (and the adapter,
    if any) load the way a run loads them: into the model its config.json describes. Returns what was loaded."""
    import torch

    from torchtune_lite.checkpointing import FullModelHFCheckpointer, load_recipe_state
    from torchtune_lite.models import from_pretrained_config
    from torchtune_lite.training.model_from_checkpoint import build_model_from_checkpoint

    state = load_recipe_state(checkpoint / "recipe_state.pt")
    on_disk = sorted(str(p.relative_to(checkpoint)) for p in checkpoint.rglob("*") if p.is_file())
    assert sorted([*state["checkpoint_files"], "recipe_state.pt"]) == on_disk
    adapter = checkpoint / "adapter" if (checkpoint / "adapter").is_dir() else None
    checkpointer = FullModelHFCheckpointer(checkpoint, None, "LLAMA2", checkpoint.parent / "unused", adapter_checkpoint=adapter)
    model = build_model_from_checkpoint(functools.partial(from_pretrained_config, checkpoint), checkpointer,
                                        device=torch.device("cpu"), dtype=torch.float32)
    loaded = {"model": model.state_dict(), **checkpointer.load_checkpoint()}
    assert loaded["model"] and (adapter is None or loaded["adapter"])
    return loaded


REFERENCE_STEPS = 6


@pytest.fixture(scope="session")
def reference_run(hf_checkpoint, tmp_path_factory) -> Path:
    """An uninterrupted LoRA run of REFERENCE_STEPS steps: what interrupted and resumed runs must equal."""
    out = tmp_path_factory.mktemp("reference") / "out"
    result = run_lora(hf_checkpoint, out, max_steps_per_epoch=REFERENCE_STEPS)
    assert result.returncode == 0, result.stderr
    return out
