"""The machine's limit for a Llama training step: its ISA, the matmul rate at the model's own shapes, and
the tokens/s that rate allows. Imported by qlora_vs_peers.py and build_qlora_7b.py.

The limit counts every GEMM of a step with frozen base weights (forward, and the gradient of each linear's
input) plus attention's score matrices (four matmuls of s x s x head_dim per head, as GEMMs: "attention at
GEMM speed"), timed at the step's token count. LoRA's rank-r matmuls are left out (under 2% here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional
from pathlib import Path

import torch


def cpu_isa() -> str:
    """The widest vector/matrix extensions of this CPU, e.g. `AVX2 AVX512 AVX512-BF16 AMX` (x86 Linux)."""
    try:
        flags = next(
            (set(line.split(":")[1].split()) for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")),
            set(),
        )
    except OSError:
        flags = set()
    names = [("avx2", "AVX2"), ("avx512f", "AVX512"), ("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX")]
    found = [name for flag, name in names if flag in flags]
    return " ".join(found) or f"unknown ({torch.backends.cpu.get_cpu_capability()})"


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}"
    return f"CPU ISA: {cpu_isa()}, {torch.get_num_threads()} threads"


@dataclass
class LlamaShape:
    embed_dim: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_dim: int
    vocab_size: int

    def gemms(self, tokens: int) -> list[tuple[int, int, int]]:
        """(m, k, n) of every GEMM in one step over `tokens` tokens: each linear forward and its input gradient."""
        d, hd = self.embed_dim, self.embed_dim // self.num_heads
        kv = self.num_kv_heads * hd
        linears = [(d, d), (d, kv), (d, kv), (d, d), (d, self.intermediate_dim), (d, self.intermediate_dim), (self.intermediate_dim, d)]
        per_layer = [g for i, o in linears for g in ((tokens, i, o), (tokens, o, i))]
        return per_layer * self.num_layers + [(tokens, d, self.vocab_size), (tokens, self.vocab_size, d)]

    def attention_flop(self, batch: int, seq: int) -> float:
        """Score-matrix matmuls of one step: q k^T and P v forward, four in backward (full s x s)."""
        return 6 * 2 * batch * self.num_heads * seq * seq * (self.embed_dim // self.num_heads) * self.num_layers


def best_seconds(fn, repeat: int, device: Optional[torch.device] = None) -> float:
    """The fastest of `repeat` timed calls of `fn` (waiting for a CUDA device's queue around each)."""
    cuda = device is not None and device.type == "cuda"
    best = float("inf")
    for _ in range(repeat):
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def _gemm_seconds(m: int, k: int, n: int, dtype: torch.dtype, device: torch.device, repeat: int) -> float:
    a, b = torch.randn(m, k, dtype=dtype, device=device), torch.randn(k, n, dtype=dtype, device=device)
    a @ b
    return best_seconds(lambda: a @ b, repeat, device)


@dataclass
class StepLimit:
    gemm_gflops: float  # measured rate over the step's GEMM shapes
    flop_per_token: float
    tokens_per_s: float  # the step's FLOP at that rate

    def describe(self, dtype: torch.dtype) -> str:
        return (f"matmul rate at the model's shapes, {str(dtype)[6:]}: {self.gemm_gflops:.0f} GFLOP/s; "
                f"{self.flop_per_token / 1e6:.0f} MFLOP per trained token -> limit {self.tokens_per_s:.0f} tokens/s")

    def percent(self, tokens_per_s: float) -> str:
        return f"{100 * tokens_per_s / self.tokens_per_s:.0f}%"


def step_limit(shape: LlamaShape, batch: int, seq: int, dtype: torch.dtype, device: torch.device, repeat: int = 3) -> StepLimit:
    """Times each distinct GEMM shape of the step once (best of `repeat`) and sums them as the step would."""
    gemms = shape.gemms(batch * seq)
    seconds = {g: _gemm_seconds(*g, dtype, device, repeat) for g in set(gemms)}
    gemm_flop = sum(2 * m * k * n for m, k, n in gemms)
    rate = gemm_flop / sum(seconds[g] for g in gemms)
    total = gemm_flop + shape.attention_flop(batch, seq)
    return StepLimit(rate / 1e9, total / (batch * seq), rate * batch * seq / total)
