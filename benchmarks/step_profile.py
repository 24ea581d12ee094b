"""Where one eager training step of the 58M peer-shaped model spends its CPU time, op by op (torch.profiler).

    python benchmarks/step_profile.py [--kinds qlora,lora] [--dtype bf16] [--steps 3] [--top 25]
    python benchmarks/step_profile.py --kinds qlora --compare-compile --steps 0 --rounds 16  # compiled vs eager

Random weights, 4 x 256 tokens, LoRA r=8 on q,v (--targets all: every linear), the fused loss, AdamW:
the step of benchmarks/qlora_vs_peers.py without data loading. Prints each op's self CPU time as a share
of the step (fractions survive a shared, loaded machine better than absolute times), then the kinds'
step times side by side, measured outside the profiler in alternating rounds. --compare-compile adds each
kind compiled per layer as the recipe compiles it (`KIND+compile`), to see whether `compile` pays.
"""

import argparse
import statistics
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from torchtune_lite.models.llama2 import lora_llama2, qlora_llama2
from torchtune_lite.modules.peft import is_adapter_key
from torchtune_lite.modules.transformer import TransformerDecoderLayer
from torchtune_lite.training.compile import compile_model
from torchtune_lite.training.loss import ChunkedCrossEntropyLoss
from torchtune_lite.training.precision import set_default_dtype

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
BUILDERS = {"qlora": qlora_llama2, "lora": lora_llama2}
TARGETS = {"qv": (["q_proj", "v_proj"], False), "all": (["q_proj", "k_proj", "v_proj", "output_proj"], True)}


def build(kind: str, targets: str, dtype: torch.dtype) -> torch.nn.Module:
    modules, mlp = TARGETS[targets]
    torch.manual_seed(0)
    with set_default_dtype(dtype):
        model = BUILDERS[kind](modules, apply_lora_to_mlp=mlp, vocab_size=32000, num_layers=8, num_heads=8,
                               num_kv_heads=8, embed_dim=512, intermediate_dim=1376, max_seq_len=512, lora_rank=8,
                               lora_alpha=16)
    for name, p in model.named_parameters():
        p.requires_grad_(is_adapter_key(name))
    return model


def make_step(model: torch.nn.Module):
    tokens = torch.randint(0, 32000, (4, 257), generator=torch.Generator().manual_seed(0))
    loss_fn = ChunkedCrossEntropyLoss()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)

    def step() -> None:
        loss_sum, n = loss_fn(model(tokens[:, :-1], return_hidden=True), model.output, tokens[:, 1:])
        (loss_sum / n).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def op_shares(step, steps: int) -> tuple[float, list[tuple[str, float, int]]]:
    """(step ms, [(op, share of the step, calls per step)]) by self CPU time over `steps` profiled steps."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    self_us: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for event in prof.key_averages():
        self_us[event.key] += event.self_cpu_time_total
        calls[event.key] += event.count
    total = sum(self_us.values())
    rows = sorted(((k, v / total, calls[k] // steps) for k, v in self_us.items()), key=lambda r: -r[1])
    return total / steps / 1e3, rows


def torch_lite_location() -> str:
    import torchtune_lite

    return str(torchtune_lite.__file__).rsplit("/torchtune_lite/", 1)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="qlora,lora")
    parser.add_argument("--dtype", default="bf16", choices=DTYPES)
    parser.add_argument("--targets", default="qv", choices=TARGETS)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps per kind (0: time only)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds after the profile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 is steadiest on a shared machine)")
    parser.add_argument("--compare-compile", action="store_true", help="also time each kind compiled per layer")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    kinds = args.kinds.split(",")
    steps = {}
    for kind in kinds:
        steps[kind] = make_step(build(kind, args.targets, DTYPES[args.dtype]))
        if args.compare_compile:
            model = build(kind, args.targets, DTYPES[args.dtype])
            compile_model(model, (TransformerDecoderLayer,))
            steps[f"{kind}+compile"] = make_step(model)
    for kind, step in steps.items():
        start = time.perf_counter()
        step(), step()  # warm-up: allocator, kernels, optimizer state, compiling
        if kind.endswith("+compile"):
            print(f"{kind}: first two steps {time.perf_counter() - start:.1f} s (compiling included)")
        if not args.steps:
            continue
        ms, rows = op_shares(step, args.steps)
        print(f"\n{kind} {args.dtype} ({torch.get_num_threads()} threads): {ms:.0f} ms self CPU per profiled step")
        for name, share, n in rows[: args.top]:
            print(f"  {share * 100:5.1f}%  {n:5d}/step  {name}")
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.rounds):
        for kind, step in steps.items():
            start = time.perf_counter()
            step()
            times[kind].append(time.perf_counter() - start)
    medians = {kind: statistics.median(t) for kind, t in times.items()}
    print(f"\n{torch_lite_location()}: step time, median of {args.rounds} alternating rounds: "
          + ", ".join(f"{kind} {ms * 1e3:.0f} ms" for kind, ms in medians.items()))
    if args.compare_compile:
        pairs = [(kind, f"{kind}+compile") for kind in kinds]
    else:
        pairs = [tuple(kinds)] if len(kinds) == 2 else []
    for a, b in pairs:
        ratios = [x / y for x, y in zip(times[a], times[b])]
        print(f"{a}/{b} per round: " + ", ".join(f"{r:.2f}" for r in ratios)
              + f" (median {statistics.median(ratios):.2f})")


if __name__ == "__main__":
    main()
