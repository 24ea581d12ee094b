"""Steps/s of the shared TrainLoop on CPU: does dropping the per-step host sync (`.item()`) cost anything here?

    python benchmarks/train_loop_sync.py [--steps 60] [--rounds 3] [--log-every 10] [--src OLD_CHECKOUT]

Runs TrainLoop (LoRA Llama-2, 4 layers, dim 256, batch 4 x 128 random tokens, AdamW, fp32, 2 threads) in a
fresh process for this checkout and, with --src, for another checkout (e.g. the code before the change),
alternating rounds because the machine is shared; prints the median steps/s of each. On CUDA the gain is
that the host queues the next step while the device runs; on CPU the point is that it is not slower.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import sys, time, torch
from torchtune_lite.models.llama2 import lora_llama2
from torchtune_lite.modules.peft import get_adapter_params, set_trainable_params
from torchtune_lite.training.loss import ChunkedCrossEntropyLoss
from torchtune_lite.training.train_loop import LoopSettings, TrainLoop

steps, log_every = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(2)
torch.manual_seed(0)
model = lora_llama2(["q_proj", "v_proj"], lora_rank=8, lora_alpha=16.0, vocab_size=1024, num_layers=4, num_heads=8,
                    num_kv_heads=8, embed_dim=256, intermediate_dim=768, max_seq_len=256)
adapters = get_adapter_params(model)
set_trainable_params(model, adapters)
tokens = torch.randint(0, 1024, (steps, 4, 128), generator=torch.Generator().manual_seed(1))
batches = [{"tokens": t, "labels": t.clone()} for t in tokens]

class Loader(list):
    generator = None

class Quiet:
    def log_dict(self, metrics, step):
        pass

loop = TrainLoop(model=model, loss_fn=ChunkedCrossEntropyLoss(), optimizer=torch.optim.AdamW(adapters.values(), lr=1e-4),
                 lr_scheduler=None, dataloader=Loader(batches), sampler=None, trainable_params=list(adapters.values()),
                 device=torch.device("cpu"), settings=LoopSettings(log_every_n_steps=log_every, log_peak_memory_stats=False),
                 metric_logger=Quiet(), save_checkpoint=lambda progress, end: None)
loop.run()
steady = loop.step_seconds[5:]
print(len(steady) / sum(steady))
"""


def steps_per_second(src: Path | None, steps: int, log_every: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "TQDM_DISABLE": "1"}
    if src is not None:
        env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}"
    out = subprocess.run([sys.executable, "-c", CHILD, str(steps), str(log_every)], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--src", type=Path, default=None, help="another checkout to compare with")
    args = parser.parse_args()
    runs: dict[str, list[float]] = {"this checkout": []}
    if args.src is not None:
        runs[str(args.src)] = []
    for _ in range(args.rounds):
        for name in runs:
            src = None if name == "this checkout" else args.src
            runs[name].append(steps_per_second(src, args.steps, args.log_every))
    print(f"TrainLoop, {args.steps} steps, log every {args.log_every}, median of {args.rounds} alternating rounds")
    for name, values in runs.items():
        print(f"{name}: {statistics.median(values):.2f} steps/s ({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
