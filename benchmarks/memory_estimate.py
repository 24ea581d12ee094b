"""Memory estimate vs measured peak: runs the tiny LoRA and QLoRA recipes with and without activation
checkpointing, and prints `tune estimate`'s figure beside the peak each run logged.

    python benchmarks/memory_estimate.py [--steps 20] [--out /tmp/memory_estimate] [--reuse]

On CPU the measured peak is the process's peak resident set (see torchtune_lite/training/memory.py), so
the estimate includes the measured runtime baseline. Each run takes a few minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from torchtune_lite import config
from torchtune_lite.training.memory_estimate import estimate_memory, longest_sample

_GIB = 1024**3
CASES = [(name, ac) for name in ("tiny/lora", "tiny/qlora") for ac in (False, True)]


def measured_peak(config_name: str, ac: bool, steps: int, output_dir: Path, rerun: bool = True) -> float:
    """Runs the recipe (unless `rerun` is False and it ran before) and returns the highest `rss_peak` (GiB) it
    logged (the training steps' lines; validation lines carry no memory figures)."""
    log = output_dir / "logs" / "metrics.jsonl"
    if rerun or not log.is_file():
        _run_recipe(config_name, ac, steps, output_dir)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return max(r["rss_peak"] for r in records if "rss_peak" in r)


def _run_recipe(config_name: str, ac: bool, steps: int, output_dir: Path) -> None:
    overrides = [
        f"max_steps_per_epoch={steps}", "epochs=1", f"output_dir={output_dir}", f"enable_activation_checkpointing={ac}",
        "generate_after_training=null", "log_every_n_steps=1", "overwrite_output_dir=True",
    ]
    command = [sys.executable, "-m", "torchtune_lite.cli.tune", "run", "lora_finetune_single_device", "--config", config_name, *overrides]
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "WANDB_MODE": "offline"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("/tmp/memory_estimate"))
    parser.add_argument("--reuse", action="store_true", help="read the peaks of runs already in --out instead of rerunning")
    args = parser.parse_args()
    print(f"{'config':<12} {'AC':<4} {'seq':>4} {'estimate GiB':>13} {'measured GiB':>13} {'error':>7}")
    for name, ac in CASES:
        cfg = config.load_config(name, [f"enable_activation_checkpointing={ac}"])
        estimate = estimate_memory(cfg, seq_len=longest_sample(cfg))
        peak = measured_peak(name, ac, args.steps, args.out / f"{name.replace('/', '_')}_ac{int(ac)}", rerun=not args.reuse)
        error = (estimate.total / _GIB - peak) / peak
        print(f"{name:<12} {'on' if ac else 'off':<4} {estimate.seq_len:>4} {estimate.total / _GIB:>13.3f} {peak:>13.3f} {error:>+7.1%}", flush=True)


if __name__ == "__main__":
    main()
