"""Tokens/s and peak RSS per rank: the single-device recipe vs the distributed one on 1 and 2 processes.

    python benchmarks/distributed_scaling.py [--config tiny/qlora] [--steps 20] [--global-batch 8] [key=value ...]

Runs the real `tune run` commands on the same config and global batch (per-rank batch = global / ranks) and
prints one row per run. On a 2-core CPU two ranks share the cores, so the point is memory per rank and that
the distributed path costs little, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run(ranks: int, recipe: str, args: argparse.Namespace, extra: list[str], out: Path) -> dict:
    launcher = ["--nproc_per_node", str(ranks)] if recipe == "lora_finetune_distributed" else []
    cmd = [
        sys.executable, "-m", "torchtune_lite.cli.tune", "run", *launcher, recipe, "--config", args.config,
        f"output_dir={out}", "epochs=1", f"max_steps_per_epoch={args.steps}", f"batch_size={args.global_batch // ranks}",
        "log_every_n_steps=1", "generate_after_training=null", "~dataset_val", "~run_val_every_n_steps", "overwrite_output_dir=True", *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    records = [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if "loss" in r]  # drop validation lines
    steady = records[2:] or records  # the first steps include one-time costs
    per_rank = {int(r): float(gib) for r, gib in re.findall(r"rank (\d+): peak memory rss peak ([\d.]+) GiB", proc.stdout)}
    if not per_rank:
        per_rank = {0: max(r.get("rss_peak", 0.0) for r in records)}
    return {
        "tokens_per_second": statistics.median(r["tokens_per_second"] for r in steady),
        "final_loss": records[-1]["loss"],
        "rss_peak_per_rank": per_rank,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny/qlora")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--global-batch", type=int, default=8)
    args, extra = parser.parse_known_args()
    rows = [("single device", 1, "lora_finetune_single_device"),
            ("distributed, 1 process", 1, "lora_finetune_distributed"),
            ("distributed, 2 processes", 2, "lora_finetune_distributed")]
    print(f"config {args.config}, global batch {args.global_batch}, {args.steps} steps, overrides {extra or 'none'}")
    print(f"{'run':<26} {'tokens/s':>9} {'final loss':>10}  peak RSS per rank (GiB)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, ranks, recipe in rows:
            result = run(ranks, recipe, args, extra, Path(tmp) / name.replace(" ", "_").replace(",", ""))
            rss = ", ".join(f"rank {r}: {gib:.2f}" for r, gib in sorted(result["rss_peak_per_rank"].items()))
            print(f"{name:<26} {result['tokens_per_second']:>9.0f} {result['final_loss']:>10.4f}  {rss}", flush=True)


if __name__ == "__main__":
    main()
