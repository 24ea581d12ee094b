"""Memory estimate vs measured peak on every tiny config: LoRA, QLoRA, full fine-tuning and DPO (LoRA and
QLoRA), fp32 and bf16, one device and two ranks (the full fine-tune recipe has no distributed form), with and
without activation checkpointing.

    python benchmarks/memory_estimate.py [--as-shipped | --steps N] [--configs tiny/lora,...] [--dtypes fp32,bf16]
                                         [--ranks 1,2] [--ac off,on] [--out /tmp/memory_estimate]

Each cell is one real `tune run` of the shipped config: with `--as-shipped`, the whole run the config describes
(every epoch, validation, the saves and `generate_after_training`, as a user runs it); else one epoch of
`--steps` steps (the instruction samples are 46-51 tokens long for three in four of them, so 20 batches of 8
reach the longest batch length, which the estimate is for, within a few tokens; the pretraining batches are all
packed to 256) with `generate_after_training` off. Processes run on one thread each (OpenMP threads on a shared, oversubscribed machine run 10-100x slower; the thread count
changes the peak by a few MB). The figures compared are the
ones the recipe prints: its estimate (the breakdown's total, whose runtime baseline is the process's resident
set, less the weights, once data and model are loaded) against the measured peak, which on CPU is the process's peak resident set (`peak_rss_bytes`:
everything the process ever held at once, Python and torch included, not a delta over a baseline). On two
ranks each rank's peak is compared with the per-rank estimate, and the worse is shown. The `tune estimate`
column is the same estimate made outside a run, whose runtime baseline is measured in a fresh interpreter.
A 20-step run takes 20-60 s on 2 shared cores, the matrix 10-20 minutes; a run as shipped 1-10 minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from torchtune_lite import config
from torchtune_lite.training.memory_estimate import estimate_memory, run_batch_shapes, sample_lengths

_GIB = 1024**3
_ASSETS = Path(__file__).resolve().parents[1] / "torchtune_lite" / "assets" / "tiny"
# The recipes each tiny config runs in (tiny/pretrain is full fine-tuning, one device only).
_RECIPES = {"tiny/lora": "lora", "tiny/qlora": "lora", "tiny/pretrain": "full", "tiny/lora_dpo": "dpo", "tiny/qlora_dpo": "dpo"}
_TOTAL = re.compile(r"^\s+total\s+([\d,.]+) MiB", re.MULTILINE)
_RANK_PEAK = re.compile(r"rank (\d+): peak memory rss peak ([\d.]+) GiB")
_RANK0_PEAK = re.compile(r"vs measured rss_peak ([\d.]+) GiB \(([+-]\d+)%\)")


@dataclass
class Cell:
    config: str
    dtype: str
    ranks: int
    ac: bool

    @property
    def recipe(self) -> str:
        kind = _RECIPES[self.config]
        if kind == "full":
            return "full_finetune_single_device"
        name = "lora_dpo" if kind == "dpo" else "lora_finetune"
        return f"{name}_distributed" if self.ranks > 1 else f"{name}_single_device"

    @property
    def overrides(self) -> list[str]:
        extra = [f"checkpointer.checkpoint_dir={_ASSETS / 'base'}"] if self.config == "tiny/pretrain" else []
        return [f"dtype={self.dtype}", f"enable_activation_checkpointing={self.ac}", *extra]

    def label(self) -> str:
        return f"{self.config:<14} {self.dtype:<5} {self.ranks:>5} {'on' if self.ac else 'off':<4}"


@dataclass
class Measured:
    estimate_gib: float  # the recipe's own estimate (the table it prints at setup)
    rank_peaks_gib: dict[int, float]  # each rank's peak resident set, as the recipe prints it

    def worst_peak(self) -> float:
        """The rank peak furthest from the estimate."""
        return max(self.rank_peaks_gib.values(), key=lambda peak: abs(self.estimate_gib - peak) / peak)


def run_length(steps: int | None) -> list[str]:
    """Overrides for one epoch of `steps` steps (0: the whole epoch) without generation; None: the run as shipped."""
    if steps is None:
        return []
    return ["epochs=1", f"max_steps_per_epoch={steps or 'null'}", "generate_after_training=null"]


def run_cell(cell: Cell, steps: int | None, out: Path) -> Measured:
    """One `tune run` of the cell; the estimate and peaks the recipe printed."""
    launcher = ["--nproc_per_node", str(cell.ranks)] if cell.ranks > 1 else []
    cmd = [
        sys.executable, "-m", "torchtune_lite.cli.tune", "run", *launcher, cell.recipe, "--config", cell.config,
        *cell.overrides, f"output_dir={out}", *run_length(steps), "overwrite_output_dir=True",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    estimate_mib = float(_TOTAL.search(proc.stdout).group(1).replace(",", ""))
    peaks = {int(rank): float(gib) for rank, gib in _RANK_PEAK.findall(proc.stdout)}
    if not peaks:  # one device: the recipe's comparison line
        peaks = {0: float(_RANK0_PEAK.search(proc.stdout).group(1))}
    return Measured(estimate_mib / 1024, peaks)


def tune_estimate_gib(cell: Cell, steps: int | None) -> float:
    """`tune estimate --seq-len data` for the cell (its runtime baseline measured in a fresh interpreter)."""
    cfg = config.load_config(cell.config, [*cell.overrides, *run_length(steps)])
    lengths, num_samples = sample_lengths(cfg)
    shapes = run_batch_shapes(cfg, lengths, num_samples, cell.ranks)
    return estimate_memory(cfg, seq_len=max(lengths), world_size=cell.ranks, batch_shapes=shapes).total / _GIB


def cells(args: argparse.Namespace) -> list[Cell]:
    return [
        Cell(name, dtype, ranks, ac == "on")
        for name in args.configs.split(",") for dtype in args.dtypes.split(",") for ranks in map(int, args.ranks.split(","))
        for ac in args.ac.split(",")
        if ranks == 1 or _RECIPES[name] != "full"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps per run (0: the whole first epoch)")
    parser.add_argument("--as-shipped", action="store_true", help="run each config whole, as shipped (overrides --steps)")
    parser.add_argument("--configs", default=",".join(_RECIPES))
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--ac", default="off,on", help="activation checkpointing")
    parser.add_argument("--out", type=Path, default=None, help="where runs write (default: a temporary folder)")
    args = parser.parse_args()
    steps = None if args.as_shipped else args.steps
    print(f"{'config':<14} {'dtype':<5} {'ranks':>5} {'AC':<4} {'estimate':>9} {'measured':>9} {'error':>7} "
          f"{'tune estimate':>14} {'error':>7}   (GiB; measured: peak RSS, the worst rank's)")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for cell in cells(args):
            out = (args.out or Path(tmp)) / f"{cell.config.replace('/', '_')}_{cell.dtype}_{cell.ranks}r_ac{int(cell.ac)}"
            measured = run_cell(cell, steps, out)
            peak = measured.worst_peak()
            error = (measured.estimate_gib - peak) / peak
            offline = tune_estimate_gib(cell, steps)
            offline_error = (offline - peak) / peak
            worst = max(worst, abs(error), abs(offline_error))
            print(f"{cell.label()} {measured.estimate_gib:>9.3f} {peak:>9.3f} {error:>+7.1%} {offline:>14.3f} {offline_error:>+7.1%}",
                  flush=True)
    print(f"largest error: {worst:.1%}")


if __name__ == "__main__":
    main()
