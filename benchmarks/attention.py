"""Attention forward+backward on this CPU: our kernel choice (modules/sdpa.py) vs torch's SDPA, and a GEMM.

    python benchmarks/attention.py [--shape 4x8x256x64] [--kv-heads 8] [--repeat 20]

Times causal and packed (block-diagonal, 4 documents per row) attention in bf16 and fp32, alternating
the two implementations within each round (the machine is shared: compare ratios), best of --repeat.
GFLOP/s counts the full s x kv score matrix (4 matmuls of 2*b*h*s*kv*d: q k^T and P v forward,
three in backward, the mask's zeros included), and a GEMM of the model's q projection shape gives the
matmul rate the attention is compared with.
"""

import argparse

import torch
import torch.nn.functional as F

from machine_limit import best_seconds
from torchtune_lite.modules import sdpa

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def _best(fn, repeat: int) -> float:
    fn()  # warm-up: first-call allocations and kernel selection
    return best_seconds(fn, repeat)


def packed_mask(b: int, s: int, docs: int = 4) -> torch.Tensor:
    doc = torch.arange(s) * docs // s
    same = doc[:, None] == doc[None, :]
    return (same & torch.ones(s, s, dtype=torch.bool).tril()).expand(b, 1, s, s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="4x8x256x64", help="batch x heads x seq x head_dim")
    parser.add_argument("--kv-heads", type=int, default=0, help="default: as many as heads")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    b, h, s, d = (int(x) for x in args.shape.split("x"))
    kvh = args.kv_heads or h
    flop = 5 * 2 * b * h * s * s * d  # 2 matmuls forward, 3 in backward (dq, dk, dv, dP: 4; P v recomputed by none)
    probe = torch.empty(b, h, s, d)
    path = "batched matmul" if sdpa.use_matmul_attention(probe, probe, 0.0) else "torch SDPA"
    print(f"shape b={b} h={h} kv_heads={kvh} s={s} d={d}, threads {torch.get_num_threads()}, ours takes: {path}")
    for name, dtype in DTYPES.items():
        g = torch.Generator().manual_seed(0)
        q = torch.randn(b, h, s, d, generator=g).to(dtype).requires_grad_()
        k, v = (torch.randn(b, kvh, s, d, generator=g).to(dtype).requires_grad_() for _ in range(2))
        grad = torch.randn(b, h, s, d, generator=g).to(dtype)
        x, w = torch.randn(b * s, h * d, dtype=dtype), torch.randn(h * d, h * d, dtype=dtype)
        gemm = _best(lambda: x @ w, args.repeat)
        print(f"{name}: GEMM [{b * s}x{h * d}] x [{h * d}x{h * d}] {2 * b * s * (h * d) ** 2 / gemm / 1e9:.0f} GFLOP/s")
        for case, kw in (("causal", {"is_causal": True}), ("packed", {"mask": packed_mask(b, s)})):
            ref_kw = {"attn_mask": kw["mask"]} if "mask" in kw else kw
            ours = lambda: sdpa.attention(q, k, v, **kw).backward(grad)  # noqa: E731
            torch_sdpa = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=kvh != h, **ref_kw).backward(grad)  # noqa: E731
            t_ours, t_torch = float("inf"), float("inf")
            for _ in range(3):  # alternate
                t_ours = min(t_ours, _best(ours, args.repeat // 3 or 1))
                t_torch = min(t_torch, _best(torch_sdpa, args.repeat // 3 or 1))
            print(f"  {case:>6} fwd+bwd: ours {t_ours * 1e3:6.2f} ms ({flop / t_ours / 1e9:5.0f} GFLOP/s)  "
                  f"torch SDPA {t_torch * 1e3:6.2f} ms ({flop / t_torch / 1e9:5.0f} GFLOP/s)  speedup {t_torch / t_ours:.2f}x")


if __name__ == "__main__":
    main()
