"""Packed against unpacked training on the tiny model: real (non-padding) tokens per second and the share of
batch positions that are padding, over instruction data with an Alpaca-like spread of sample lengths.

    python benchmarks/packing.py [--samples 400] [--steps 12] [--batch-size 8] [--max-seq-len 512]

The samples are written as an Alpaca-format JSON Lines file and read by `instruct_dataset` (packed=False and
packed=True), so tokenization, truncation, collation and packing are the recipe's. Their token lengths follow
a log-normal (median 120, sigma 0.8, about the spread of the Alpaca data set's prompt + answer under a
Llama tokenizer), words drawn from the bundled corpus. Model: the tiny config's LoRA Llama-2 (6 layers, dim 256),
AdamW, fp32, 2 threads. Packed rows are `max_seq_len` long, batched so each step holds about as many tokens.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from pathlib import Path

import torch

from torchtune_lite.data import padded_collate_packed, padded_collate_sft
from torchtune_lite.data.stats import padding_fraction
from torchtune_lite.datasets import instruct_dataset
from torchtune_lite.models.llama2 import lora_llama2
from torchtune_lite.models.llama2._tokenizer import Llama2Tokenizer
from torchtune_lite.modules.peft import get_adapter_params, set_trainable_params
from torchtune_lite.training.loss import ChunkedCrossEntropyLoss
from torchtune_lite.training.evaluation import forward_loss

ASSETS = Path(__file__).resolve().parents[1] / "torchtune_lite" / "assets" / "tiny"


def write_alpaca_like(path: Path, samples: int, seed: int = 0) -> None:
    words = (ASSETS / "corpus.txt").read_text(encoding="utf-8").split()
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(samples):
            n = max(8, int(math.exp(rng.gauss(math.log(120), 0.8))))  # tokens, roughly: about 1.3 per word here
            prompt, answer = max(3, n // 5), max(3, n - n // 5)  # Alpaca's answers are most of a sample
            start = rng.randrange(len(words) - n)
            f.write(json.dumps({"instruction": " ".join(words[start:start + prompt // 2]), "input": "",
                                "output": " ".join(words[start + prompt:start + prompt + answer * 3 // 4])}) + "\n")


def tokens_per_second(batches: list[dict], steps: int) -> tuple[float, float]:
    """(real tokens/s, padding fraction) over `steps` optimizer steps after 2 warm-up steps."""
    torch.manual_seed(0)
    model = lora_llama2(["q_proj", "k_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True, lora_rank=16, lora_alpha=32.0,
                        vocab_size=1024, num_layers=6, num_heads=8, num_kv_heads=4, embed_dim=256, intermediate_dim=768,
                        max_seq_len=512)
    adapters = get_adapter_params(model)
    set_trainable_params(model, adapters)
    optimizer = torch.optim.AdamW(adapters.values(), lr=1e-4)
    loss_fn, device = ChunkedCrossEntropyLoss(), torch.device("cpu")
    real = positions = 0
    elapsed = 0.0
    for i, batch in enumerate(batches[: steps + 2]):
        start = time.perf_counter()
        loss_sum, num_tokens = forward_loss(model, loss_fn, {k: v for k, v in batch.items() if k != "real_tokens"}, device)
        (loss_sum / num_tokens.clamp(min=1)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= 2:
            elapsed += time.perf_counter() - start
            real += int(batch["real_tokens"])
            positions += batch["tokens"].numel()
    return real / elapsed, 1 - real / positions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-len", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(2)
    tokenizer = Llama2Tokenizer(str(ASSETS / "tokenizer.model"), max_seq_len=args.max_seq_len)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alpaca_like.jsonl"
        write_alpaca_like(path, args.samples)
        unpacked = instruct_dataset(tokenizer, data_files=str(path))
        packed = instruct_dataset(tokenizer, data_files=str(path), packed=True)
    lengths = [len(s["tokens"]) for s in unpacked]
    order = list(range(len(unpacked)))
    random.Random(0).shuffle(order)
    b = args.batch_size
    plain = [{**padded_collate_sft([unpacked[j] for j in order[i:i + b]]), "real_tokens": sum(lengths[j] for j in order[i:i + b])}
             for i in range(0, len(order) - b + 1, b)]
    # as many tokens per packed step as an average unpacked one holds
    rows_per_step = max(1, round(sum(lengths) / len(lengths) * b / args.max_seq_len))
    rows = [packed[i] for i in range(len(packed))]
    full = [{**padded_collate_packed(rows[i:i + rows_per_step]),
             "real_tokens": sum(sum(r["seq_lens"]) - (r["seq_lens"][-1] if r["tokens"][-1] == tokenizer.pad_id else 0)
                                for r in rows[i:i + rows_per_step])}
            for i in range(0, len(rows) - rows_per_step + 1, rows_per_step)]
    print(f"{len(lengths)} samples, token lengths median {sorted(lengths)[len(lengths) // 2]}, "
          f"p90 {sorted(lengths)[len(lengths) * 9 // 10]}, max {max(lengths)}; padding over shuffled batches of {b}: "
          f"{padding_fraction(lengths, b):.1%}")
    for name, batches in (("unpacked", plain), (f"packed ({rows_per_step} x {args.max_seq_len})", full)):
        rate, padding = tokens_per_second(batches, args.steps)
        print(f"{name:>24}: {rate:8.0f} real tokens/s, padding {padding:.1%} of positions")


if __name__ == "__main__":
    main()
