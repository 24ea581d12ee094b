"""Per-rank peak RSS of a 4-rank QLoRA run: does each rank hold only its shard of the NF4 base?

    python benchmarks/nf4_shard_memory.py [--ranks 4] [--layers 8] [--dim 2048] [--hidden 5504] [--src DIR]

Writes a random Llama-2 of the given shape once (bf16 safetensors, cached under --workdir), then runs the real
`tune run --nproc_per_node N lora_finetune_distributed` for 2 steps (batch 1 per rank, 64 tokens, LoRA on
every linear, so every linear's base is NF4) and prints each rank's peak RSS beside the NF4 base's size and
its 1/N share. `--src` puts another copy of the library first on PYTHONPATH (e.g. this checkout with one change
reverted) to compare; `tune` still runs the installed recipes, so the copy must fit them. Peak RSS also counts
the checkpoint pages each rank reads (every rank streams the whole file), so it varies by ~0.1 GiB between runs:
compare means over ranks and runs. Rank 0 also holds the whole gathered model while it saves at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

VOCAB, HEADS = 1024, 16


def write_checkpoint(path: Path, layers: int, dim: int, hidden: int) -> Path:
    if (path / "config.json").is_file():
        return path
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=dim, intermediate_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=HEADS, num_key_value_heads=HEADS, max_position_embeddings=256,
                         tie_word_embeddings=False, torch_dtype="bfloat16")
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(path)
    return path


def nf4_bytes(layers: int, dim: int, hidden: int) -> int:
    # 4 bits per weight + one 8-bit scaler per 64-value block + one fp32 factor per 256 scalers
    numel = layers * (4 * dim * dim + 3 * dim * hidden)
    return numel // 2 + numel // 64 + 4 * (numel // (64 * 256))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--hidden", type=int, default=5504)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/nf4_shard_memory"))
    parser.add_argument("--src", type=Path, default=None, help="a checkout to import torchtune_lite from instead")
    args = parser.parse_args()

    checkpoint = write_checkpoint(args.workdir / f"llama_{args.layers}x{args.dim}x{args.hidden}", args.layers, args.dim, args.hidden)
    shape = dict(vocab_size=VOCAB, num_layers=args.layers, num_heads=HEADS, num_kv_heads=HEADS, embed_dim=args.dim,
                 intermediate_dim=args.hidden, max_seq_len=256)
    overrides = [f"model.{k}={v}" for k, v in shape.items()] + [
        f"checkpointer.checkpoint_dir={checkpoint}", f"output_dir={args.workdir / 'run'}", "overwrite_output_dir=True",
        "tokenizer.max_seq_len=64", "batch_size=1", "epochs=1", "max_steps_per_epoch=2", "log_every_n_steps=1",
        "dtype=bf16", "generate_after_training=null", "~dataset_val", "~run_val_every_n_steps", "log_memory_estimate=False",
    ]
    cmd = [sys.executable, "-m", "torchtune_lite.cli.tune", "run", "--nproc_per_node", str(args.ranks),
           "lora_finetune_distributed", "--config", "tiny/qlora", *overrides]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    if args.src is not None:
        env["PYTHONPATH"] = f"{args.src}{os.pathsep}{env.get('PYTHONPATH', '')}"
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    peaks = {int(r): float(gib) for r, gib in re.findall(r"rank (\d+): peak memory rss peak ([\d.]+) GiB", proc.stdout)}
    base = nf4_bytes(args.layers, args.dim, args.hidden) / 1024**3
    print(f"model {args.layers} layers x dim {args.dim} x hidden {args.hidden}: NF4 base {base:.3f} GiB, "
          f"1/{args.ranks} share {base / args.ranks:.3f} GiB; code from {args.src or 'this checkout'}")
    for rank, gib in sorted(peaks.items()):
        print(f"rank {rank}: peak RSS {gib:.2f} GiB")


if __name__ == "__main__":
    main()
