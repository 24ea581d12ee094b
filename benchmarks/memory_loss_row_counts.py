"""Resident memory and CPU time of the fused loss when its scored-token count changes every batch, with the
projection's rows padded to a multiple of 64 (as shipped) against exact row counts (`ROW_MULTIPLE = 1`).

    python benchmarks/memory_loss_row_counts.py [--vocab 1024] [--dim 256] [--tokens 4096] [--steps 40]
                                               [--dtype bf16] [--rounds 3]

Each run is a fresh process on one thread: `--steps` forward+backward passes of `ChunkedCrossEntropyLoss`
over a trained `nn.Linear` output (as in full fine-tuning; the defaults are tiny/pretrain's shapes, 16 x 256
tokens), each batch scoring a different count of tokens (85-90% of them, as packed text does). It prints the
peak resident set (VmHWM) after the third step and after the last (the two variants alternate, `--rounds`
processes each). Time is measured apart, in this process: the two variants alternate on the same batches
and the median CPU seconds per step is printed (process time: the machine is shared, so wall time would
measure the neighbours; bf16 there counts each row count's kernel once, as both variants share one cache).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

from torchtune_lite.training import linear_cross_entropy
from torchtune_lite.training.loss import ChunkedCrossEntropyLoss

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
_MIB = 1024**2


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        return 1024 * int(next(line for line in status if line.startswith(field)).split()[1])


def batches(args: argparse.Namespace):
    """`--steps` (hidden [1, tokens, dim], labels [1, tokens]) pairs, each scoring 85-90% of its tokens."""
    g = torch.Generator().manual_seed(0)
    for _ in range(args.steps):
        hidden = torch.randn(1, args.tokens, args.dim, generator=g).to(DTYPES[args.dtype]).requires_grad_()
        labels = torch.randint(0, args.vocab, (1, args.tokens), generator=g)
        scored = int(args.tokens * (0.85 + 0.05 * torch.rand((), generator=g).item()))
        labels[0, torch.randperm(args.tokens, generator=g)[scored:]] = -100
        yield hidden, labels


def loss_step(output: nn.Module, hidden: torch.Tensor, labels: torch.Tensor, row_multiple: int) -> float:
    """One forward+backward of the loss with rows padded to `row_multiple`; its CPU seconds."""
    linear_cross_entropy.ROW_MULTIPLE = row_multiple
    start = time.process_time()
    ChunkedCrossEntropyLoss()(hidden, output, labels)[0].backward()
    output.weight.grad = hidden.grad = None
    return time.process_time() - start


def peaks(args: argparse.Namespace) -> dict:
    """This process's peak resident bytes after the third step and after the last, rows padded to `args.row_multiple`."""
    output = nn.Linear(args.dim, args.vocab, bias=False, dtype=DTYPES[args.dtype])
    peak_step3 = 0
    for step, (hidden, labels) in enumerate(batches(args)):
        loss_step(output, hidden, labels, args.row_multiple)
        if step == 2:
            peak_step3 = _status_bytes("VmHWM")
    return {"peak_step3": peak_step3, "peak_end": _status_bytes("VmHWM")}


def paired_seconds(args: argparse.Namespace) -> dict[int, float]:
    """Median CPU seconds per step of each variant, alternating on the same batches (first three skipped)."""
    output = nn.Linear(args.dim, args.vocab, bias=False, dtype=DTYPES[args.dtype])
    seconds: dict[int, list[float]] = {64: [], 1: []}
    for step, (hidden, labels) in enumerate(batches(args)):
        for multiple in (64, 1) if step % 2 else (1, 64):
            seconds[multiple].append(loss_step(output, hidden, labels, multiple))
    return {multiple: statistics.median(s[3:]) for multiple, s in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--dtype", default="bf16", choices=DTYPES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--row-multiple", type=int, default=None, help=argparse.SUPPRESS)  # set in the child
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.row_multiple is not None:
        print(json.dumps(peaks(args)))
        return
    results: dict[int, list[dict]] = {64: [], 1: []}
    for _ in range(args.rounds):
        for multiple in results:
            cmd = [sys.executable, __file__, *sys.argv[1:], "--row-multiple", str(multiple)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[multiple].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    seconds = paired_seconds(args)
    print(f"{args.steps} steps of {args.tokens} tokens, vocab {args.vocab}, dim {args.dim}, {args.dtype}, {args.rounds} rounds")
    print(f"{'rows':<26} {'peak MiB step 3':>16} {'peak MiB end':>13} {'growth MiB/step':>16} {'CPU ms/step':>12}")
    for multiple, runs in results.items():
        step3 = statistics.median(r["peak_step3"] for r in runs) / _MIB
        end = statistics.median(r["peak_end"] for r in runs) / _MIB
        ms = 1000 * seconds[multiple]
        label = "padded to a multiple of 64" if multiple == 64 else "exact (before)"
        print(f"{label:<26} {step3:>16.1f} {end:>13.1f} {(end - step3) / (args.steps - 3):>16.2f} {ms:>12.2f}")


if __name__ == "__main__":
    main()
