"""Memory of tied embeddings held once: each tied builder's weights with the output projection sharing the
embedding's Parameter (now) against a separate copy (before), and the peak RSS of building one of them
both ways in a fresh process each.

    python benchmarks/tied_embeddings.py [--build gemma3_1b] [--dtype bf16]

The table counts unique parameter storage on the meta device (exact, no memory used). The build loads the
model as the recipes do (meta build, then uninitialized storage on CPU), writes every weight once so its
pages are resident, and reports the process's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys

import torch

from torchtune_lite.models import gemma2, gemma3, llama3_2, qwen2_5, qwen3

_GIB = 1024**3
BUILDERS = {f.__name__: f for f in (gemma2.gemma2_2b, gemma2.gemma2_9b, gemma3.gemma3_1b, gemma3.gemma3_4b,
                                    llama3_2.llama3_2_1b, llama3_2.llama3_2_3b, qwen2_5.qwen2_5_0_5b, qwen3.qwen3_0_6b)}
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def unique_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())  # parameters() lists a shared one once


def build(name: str, tied: bool, dtype: torch.dtype) -> torch.nn.Module:
    """The builder's model, or (tied=False) the same with the output projection as its own copy."""
    torch.set_default_dtype(dtype)
    with torch.device("meta"):
        model = BUILDERS[name](max_seq_len=4096)
        if not tied:  # what the model held before: the output projection as a copy of the embedding
            model.output.weight = torch.nn.Parameter(torch.empty_like(model.tok_embeddings.weight))
    return model


def measure_build(name: str, tied: bool, dtype: torch.dtype) -> None:
    from torchtune_lite.training.weight_loading import allocate_empty

    model = build(name, tied, dtype)
    allocate_empty(model, torch.device("cpu"))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.01)
    print(f"{unique_bytes(model) / _GIB:.3f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default="gemma3_1b", choices=sorted(BUILDERS))
    parser.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    parser.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    dtype = DTYPES[args.dtype]
    if args._child:
        measure_build(args._child[0], args._child[1] == "tied", dtype)
        return
    print(f"weights held ({args.dtype}), GiB:")
    print(f"{'model':<14} {'tied (now)':>11} {'separate output (before)':>25} {'saved':>7}")
    for name in BUILDERS:
        now, before = unique_bytes(build(name, True, dtype)), unique_bytes(build(name, False, dtype))
        print(f"{name:<14} {now / _GIB:>11.2f} {before / _GIB:>25.2f} {(before - now) / _GIB:>7.2f}")
    print(f"\nbuilding {args.build} in {args.dtype} (fresh process each): weights GiB, peak RSS GiB")
    for mode in ("tied", "separate"):
        out = subprocess.run([sys.executable, __file__, "--dtype", args.dtype, "--_child", args.build, mode],
                             check=True, capture_output=True, text=True).stdout.split()
        print(f"  {mode:<9} weights {float(out[-2]):.2f}  peak RSS {float(out[-1]):.2f}")


if __name__ == "__main__":
    main()
