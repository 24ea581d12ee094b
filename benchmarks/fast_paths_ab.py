"""One training step of the 58M peer-shaped QLoRA model with this issue's fast paths on and off, alternating
in one process (the machine is shared: compare the ratio).

    python benchmarks/fast_paths_ab.py [--dtype bf16] [--rounds 5]

"off" is the earlier behaviour: the chunked, recomputed loss (forced with a no-op hook on the output
layer) and torch's flash SDPA for every shape. NF4 kernels are the same in both. Random weights,
4 x 256 tokens, LoRA r=8 on q,v, forward + backward (no optimizer).
"""

import argparse
import statistics
import time

import torch

from torchtune_lite.models.llama2 import qlora_llama2
from torchtune_lite.modules import sdpa
from torchtune_lite.modules.peft import is_adapter_key
from torchtune_lite.training.loss import ChunkedCrossEntropyLoss

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bf16", choices=DTYPES)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_default_dtype(DTYPES[args.dtype])
    model = qlora_llama2(["q_proj", "v_proj"], vocab_size=32000, num_layers=8, num_heads=8, num_kv_heads=8,
                         embed_dim=512, intermediate_dim=1376, max_seq_len=512, lora_rank=8, lora_alpha=16)
    for name, p in model.named_parameters():
        p.requires_grad_(is_adapter_key(name))
    tokens = torch.randint(0, 32000, (4, 257))
    loss_fn = ChunkedCrossEntropyLoss()
    budget = sdpa.MATMUL_SCORES_MAX_BYTES

    def step(fast: bool) -> float:
        sdpa.MATMUL_SCORES_MAX_BYTES = budget if fast else 0
        hook = None if fast else model.output.register_forward_pre_hook(lambda m, a: None)
        start = time.perf_counter()
        loss_sum, n = loss_fn(model(tokens[:, :-1], return_hidden=True), model.output, tokens[:, 1:])
        (loss_sum / n).backward()
        seconds = time.perf_counter() - start
        model.zero_grad(set_to_none=True)
        if hook is not None:
            hook.remove()
        return seconds

    step(True), step(False)  # warm-up
    times = {True: [], False: []}
    for _ in range(args.rounds):
        for fast in (True, False):
            times[fast].append(step(fast))
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"{args.dtype}, {torch.get_num_threads()} threads, median of {args.rounds} alternating rounds: "
          f"fast paths {on * 1e3:.0f} ms ({1024 / on:.0f} tokens/s), earlier paths {off * 1e3:.0f} ms "
          f"({1024 / off:.0f} tokens/s): {off / on:.2f}x")


if __name__ == "__main__":
    main()
