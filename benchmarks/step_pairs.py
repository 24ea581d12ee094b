"""Paired CPU time of a training step (or one block) in ONE process: A and B alternate step by step.

    python benchmarks/step_pairs.py --baseline DIR [--kinds qlora,lora] [--dtype bf16] [--pairs 10] [--threads 1]
    python benchmarks/step_pairs.py --kernels-off [--part step|attention|feed_forward] [--dtype bf16] [--pairs 30]

On a shared VM whose speed drifts 30% from minute to minute, runs in separate processes minutes apart
cannot resolve a 10% change; alternating steps in one process can. Prints the median CPU time of each side
and the median of the per-pair ratios B / A (below 1: B is faster).

--baseline DIR: A is another checkout's package (copied to a temporary folder under another name, so both
import side by side), B this one's; the step is benchmarks/step_profile.py's (58M Llama-2 shape, 4 x 256
tokens, LoRA r=8 on q,v, fused loss, AdamW) and each side prints its last losses, which should agree.
--kernels-off: A runs with TORCHTUNE_LITE_C_KERNELS=0 (torch ops), B with the C kernels.
"""

import argparse
import importlib
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def package_copy(checkout: Path, name: str) -> Path:
    """`checkout`'s torchtune_lite copied as package `name` into a temporary folder (returned, for sys.path)."""
    root = Path(tempfile.mkdtemp(prefix="step_pairs_"))
    shutil.copytree(checkout / "torchtune_lite", root / name)
    for path in (root / name).rglob("*.py"):
        path.write_text(re.sub(r"\btorchtune_lite\b", name, path.read_text()))
    return root


def training_step(package: str, kind: str) -> Callable[[], float]:
    """step_profile's step, built from `package`; returns the step's loss."""
    llama2 = importlib.import_module(f"{package}.models.llama2")
    peft = importlib.import_module(f"{package}.modules.peft")
    loss_module = importlib.import_module(f"{package}.training.loss")
    torch.manual_seed(0)
    builder = getattr(llama2, "qlora_llama2" if kind == "qlora" else "lora_llama2")
    model = builder(["q_proj", "v_proj"], apply_lora_to_mlp=False, vocab_size=32000, num_layers=8, num_heads=8,
                    num_kv_heads=8, embed_dim=512, intermediate_dim=1376, max_seq_len=512, lora_rank=8, lora_alpha=16)
    for name, p in model.named_parameters():
        p.requires_grad_(peft.is_adapter_key(name))
    tokens = torch.randint(0, 32000, (4, 257), generator=torch.Generator().manual_seed(0))
    loss_fn = loss_module.ChunkedCrossEntropyLoss()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)

    def step() -> float:
        loss_sum, n = loss_fn(model(tokens[:, :-1], return_hidden=True), model.output, tokens[:, 1:])
        loss = loss_sum / n
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def block_step(part: str, dtype: torch.dtype) -> Callable[[], float]:
    """Forward+backward of one attention or SwiGLU block of the 58M shape (frozen plain linears)."""
    from torchtune_lite.modules import FeedForward, MultiHeadAttention, RotaryPositionalEmbeddings

    torch.manual_seed(0)

    def linear(i: int, o: int) -> nn.Module:
        return nn.Linear(i, o, bias=False).to(dtype).requires_grad_(False)

    if part == "attention":
        block = MultiHeadAttention(embed_dim=512, num_heads=8, num_kv_heads=8, head_dim=64, q_proj=linear(512, 512),
                                   k_proj=linear(512, 512), v_proj=linear(512, 512), output_proj=linear(512, 512),
                                   pos_embeddings=RotaryPositionalEmbeddings(64, 512))
    else:
        block = FeedForward(gate_proj=linear(512, 1376), down_proj=linear(1376, 512), up_proj=linear(512, 1376))
    x = torch.randn(4, 256, 512, dtype=dtype, requires_grad=True)
    grad = torch.randn(4, 256, 512, dtype=dtype)

    def step() -> float:
        out = block(x)
        out.backward(grad)
        return float(out.detach().float().sum())

    return step


def alternate(
    a: Callable[[], float], b: Callable[[], float], pairs: int, env: tuple[dict, dict] = ({}, {}), clock=time.process_time
) -> None:
    """Runs a, b, a, b, ... (`env[side]` set in os.environ before each), two warm-up pairs, then `pairs` timed."""
    times: tuple[list[float], list[float]] = ([], [])
    last: tuple[list[float], list[float]] = ([], [])
    for i in range(2 * (pairs + 2)):
        side = i % 2
        os.environ.update(env[side])
        start = clock()
        value = (b if side else a)()
        elapsed = clock() - start
        if i >= 4:
            times[side].append(elapsed * 1e3)
        last[side].append(value)
    ratio = statistics.median([y / x for x, y in zip(*times)])
    print(f"A median {statistics.median(times[0]):.1f} ms, B median {statistics.median(times[1]):.1f} ms, "
          f"per-pair median B/A {ratio:.3f} ({pairs} pairs)")
    print(f"last values A {[round(v, 4) for v in last[0][-2:]]}, B {[round(v, 4) for v in last[1][-2:]]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    side = parser.add_mutually_exclusive_group(required=True)
    side.add_argument("--baseline", type=Path, help="A: this checkout's package (B: the installed one)")
    side.add_argument("--kernels-off", action="store_true", help="A: torch ops, B: the C kernels")
    parser.add_argument("--kinds", default="qlora,lora")
    parser.add_argument("--part", default="step", choices=["step", "attention", "feed_forward"])
    parser.add_argument("--dtype", default="bf16", choices=DTYPES)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", default="cpu", choices=["cpu", "wall"], help="CPU time of the process, or wall time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(DTYPES[args.dtype])
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {args.threads} thread(s), {args.dtype}, {args.clock} time")
    if args.baseline is not None:
        sys.path.insert(0, str(package_copy(args.baseline, "torchtune_lite_baseline")))
        for kind in args.kinds.split(","):
            print(f"{kind}: A = {args.baseline}, B = this checkout")
            alternate(training_step("torchtune_lite_baseline", kind), training_step("torchtune_lite", kind), args.pairs,
                      clock=clock)
        return
    switch = ({"TORCHTUNE_LITE_C_KERNELS": "0"}, {"TORCHTUNE_LITE_C_KERNELS": "1"})
    for kind in args.kinds.split(",") if args.part == "step" else [args.part]:
        step = training_step("torchtune_lite", kind) if args.part == "step" else block_step(args.part, DTYPES[args.dtype])
        print(f"{kind}: A = torch ops, B = C kernels")
        alternate(step, step, args.pairs, env=switch, clock=clock)


if __name__ == "__main__":
    main()
