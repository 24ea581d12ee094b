"""Peak memory and time of the loss step: fused projection + cross-entropy vs the chunked, recomputed path.

    python benchmarks/fused_loss.py [--vocab 128256] [--tokens 4x2048] [--dim 2048] [--dtype bf16] [--repeat 3]

Each variant runs in a fresh process (forward + backward of `ChunkedCrossEntropyLoss` on random hidden
states, output weight frozen as in LoRA, or trained with --train-weight). "peak" is the process's peak RSS
(Linux VmHWM, reset just before) above its RSS just before the first loss call, so it counts the logits and gradients the loss allocates.
The chunked path is today's path for output modules that must be called (LoRA'd, NF4, sharded); here it
is forced on a plain linear with a no-op forward pre-hook.
"""

import argparse
import json
import subprocess
import sys
import time

import torch
from torch import nn

from torchtune_lite.training.loss import ChunkedCrossEntropyLoss

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def run_one(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    b, s = (int(x) for x in args.tokens.split("x"))
    dtype = DTYPES[args.dtype]
    output = nn.Linear(args.dim, args.vocab, bias=False, dtype=dtype).requires_grad_(args.train_weight)
    if args.variant == "chunked":
        output.register_forward_pre_hook(lambda module, inputs: None)  # forces the module-calling path
    hidden = torch.randn(b, s, args.dim, dtype=dtype).requires_grad_()
    labels = torch.randint(0, args.vocab, (b, s))
    loss_fn = ChunkedCrossEntropyLoss()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # Linux: the peak (VmHWM) restarts from the current RSS
    before = _status_mb("VmRSS")
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        loss_sum, n = loss_fn(hidden, output, labels)
        (loss_sum / n).backward()
        times.append(time.perf_counter() - start)
        hidden.grad = output.weight.grad = None
    peak = _status_mb("VmHWM")
    return {"variant": args.variant, "seconds": min(times), "peak_mb": peak - before, "loss": (loss_sum / n).item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--tokens", default="4x2048")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--dtype", default="bf16", choices=DTYPES)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--train-weight", action="store_true", help="the output weight trains (full fine-tune)")
    parser.add_argument("--variant", choices=["fused", "chunked"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_one(args)))
        return
    print(f"vocab {args.vocab}, tokens {args.tokens}, dim {args.dim}, {args.dtype}, output weight "
          f"{'trained' if args.train_weight else 'frozen'}, threads {torch.get_num_threads()}")
    results = {}
    for variant in ("chunked", "fused"):  # each in its own process, so peaks do not mix
        cmd = [sys.executable, __file__, *sys.argv[1:], "--variant", variant]
        results[variant] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        r = results[variant]
        print(f"{variant:>8}: {r['seconds'] * 1e3:8.1f} ms forward+backward, peak +{r['peak_mb']:7.0f} MiB, loss {r['loss']:.5f}")
    c, f = results["chunked"], results["fused"]
    print(f"fused/chunked: time {f['seconds'] / c['seconds']:.2f}x, peak memory {f['peak_mb'] / c['peak_mb']:.2f}x")


if __name__ == "__main__":
    main()
