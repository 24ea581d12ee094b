"""NF4 quantize/dequantize (ours vs torchao) on Llama-2-7B weight shapes, ours on small weights through the C
kernels vs our torch-ops path, and linear_nf4 vs a dense F.linear.

Run by hand:  python benchmarks/nf4_kernels.py --repeat 2 [--dtypes bf16,fp32] [--linear-dtype auto] [--threads N]
Prints ns/element, speedup, and whether our fields/values are bit-identical to torchao's. Dequantize
includes allocating its output, as both APIs return a fresh tensor. The small-weight table times many calls
per round (per-call overhead is what it measures). The linear comparison runs in the dtype training would
use here (`auto`: bf16 only where the CPU computes it natively).
"""

import argparse
import os

import torch
import torch.nn.functional as F

from machine_limit import best_seconds
from torchtune_lite._torchao import to_nf4
from torchtune_lite.quantization import dequantize_nf4, linear_nf4, nf4_block_sizes, quantize_nf4
from torchtune_lite.training.precision import get_dtype

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}

SHAPES = ((4096, 4096), (4096, 11008), (11008, 4096))
SMALL_SHAPES = ((64, 64), (512, 512))
FIELDS = ("quantized_data", "quantized_scalers", "quantization_factor", "scaler_mean")


def bench_kernels(repeat: int, dtype: torch.dtype) -> None:
    print(f"{'shape':>14} {'dtype':>9} {'op':>10} {'torchao ns/el':>14} {'ours ns/el':>11} {'speedup':>8} {'bit-identical':>14}")
    for shape in SHAPES:
        w = (torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 0.02).to(dtype)
        numel = w.numel()
        ref = to_nf4(w)
        ours = quantize_nf4(w)
        t_ref = best_seconds(lambda: to_nf4(w), repeat)
        t_ours = best_seconds(lambda: quantize_nf4(w), repeat)
        same = all(torch.equal(getattr(ref, f), getattr(ours, f)) for f in FIELDS)
        print(f"{str(shape):>14} {str(dtype)[6:]:>9} {'quantize':>10} {t_ref / numel * 1e9:14.2f} {t_ours / numel * 1e9:11.2f} {t_ref / t_ours:7.1f}x {str(same):>14}")
        t_ref = best_seconds(lambda: ref.get_original_weight(), repeat)
        t_ours = best_seconds(lambda: dequantize_nf4(ref), repeat)
        same = torch.equal(ref.get_original_weight(), dequantize_nf4(ref))
        print(f"{str(shape):>14} {str(dtype)[6:]:>9} {'dequantize':>10} {t_ref / numel * 1e9:14.2f} {t_ours / numel * 1e9:11.2f} {t_ref / t_ours:7.1f}x {str(same):>14}")


def _per_call_seconds(fn, repeat: int, min_seconds: float = 0.2) -> float:
    """Fastest of `repeat` rounds of the mean time per call, each round long enough to time small calls."""
    calls = 1
    while best_seconds(lambda: [fn() for _ in range(calls)], 1) < min_seconds / 10:
        calls *= 4
    return best_seconds(lambda: [fn() for _ in range(calls)], repeat) / calls


def bench_small(repeat: int, dtype: torch.dtype) -> None:
    """Small weights, C kernels vs our torch-ops path (TORCHTUNE_LITE_C_KERNELS=0), in microseconds per call."""
    print(f"{'shape':>14} {'dtype':>9} {'op':>10} {'torch path us':>14} {'C us':>8} {'speedup':>8}")
    for shape in SMALL_SHAPES:
        w = (torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 0.02).to(dtype)
        sizes = nf4_block_sizes(w.numel())
        w_nf4 = quantize_nf4(w, *sizes)
        for op, fn in (("quantize", lambda: quantize_nf4(w, *sizes)), ("dequantize", lambda: dequantize_nf4(w_nf4))):
            times = {}
            for switch in ("0", "1"):
                os.environ["TORCHTUNE_LITE_C_KERNELS"] = switch
                times[switch] = _per_call_seconds(fn, repeat)
            os.environ.pop("TORCHTUNE_LITE_C_KERNELS")
            print(f"{str(shape):>14} {str(dtype)[6:]:>9} {op:>10} {times['0'] * 1e6:14.1f} {times['1'] * 1e6:8.1f} {times['0'] / times['1']:7.1f}x")


def bench_linear(repeat: int, tokens: int, dtype: torch.dtype) -> None:
    out_dim, in_dim = 4096, 4096
    w = (torch.randn(out_dim, in_dim) * 0.02).to(dtype)
    w_nf4 = quantize_nf4(w)
    x = torch.randn(tokens, in_dim, dtype=dtype, requires_grad=True)

    def run(fn):
        x.grad = None
        fn(x).sum().backward()

    t_dense = best_seconds(lambda: run(lambda x: F.linear(x, w)), repeat)
    t_nf4 = best_seconds(lambda: run(lambda x: linear_nf4(x, w_nf4)), repeat)
    print(f"linear fwd+bwd {tokens} tokens, {out_dim}x{in_dim}, {str(dtype)[6:]}: F.linear {t_dense * 1e3:.1f} ms, "
          f"linear_nf4 {t_nf4 * 1e3:.1f} ms ({t_nf4 / t_dense:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--dtypes", default="bf16,fp32", help="weight dtypes for the kernel table")
    parser.add_argument("--linear-dtype", default="auto", help="bf16, fp32 or auto (what training would pick)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default; 1 is steadiest on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name in args.dtypes.split(","):
        bench_kernels(args.repeat, DTYPES[name])
    for name in args.dtypes.split(","):
        bench_small(args.repeat, DTYPES[name])
    bench_linear(args.repeat, args.tokens, get_dtype(args.linear_dtype, torch.device("cpu")))


if __name__ == "__main__":
    main()
