"""How a CPU training process's resident set grows with the number of distinct batch lengths it meets.

    python benchmarks/memory_per_batch_length.py [--config tiny/qlora] [--dtype bf16] [--lengths 40:104]
                                                 [--passes 2] [--pad-to-multiple-of 1]

Trains the config's model (random weights, its LoRA/QLoRA settings, AdamW) on random tokens, one step per
length of `--lengths` (start:stop, batch `batch_size`), `--passes` times over the same lengths, on one thread.
After each step it reads the peak and current resident set and what glibc's heaps hold unused
(benchmarks/memory_phases.py `malloc_free_bytes`). A cost per new length that the second pass does not repeat is
a cache keyed by shape (oneDNN's kernels in bf16); growth in the second pass is something else.
`--pad-to-multiple-of N` rounds lengths up as the collate's `pad_to_multiple_of` would, which bounds the
number of distinct lengths.
"""

from __future__ import annotations

import argparse

import torch

from memory_phases import malloc_free_bytes, status_bytes
from torchtune_lite import config
from torchtune_lite.modules.peft import get_adapter_params, set_trainable_params
from torchtune_lite.training.loss import ChunkedCrossEntropyLoss
from torchtune_lite.training.precision import get_dtype, set_default_dtype

_MIB = 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny/qlora")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--lengths", default="40:104", help="start:stop (stop excluded)")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--pad-to-multiple-of", type=int, default=1)
    parser.add_argument("--shuffle", action="store_true", help="each pass in a random order (as a shuffled data set)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = config.load_config(args.config, [f"dtype={args.dtype}"])
    dtype = get_dtype(args.dtype, torch.device("cpu"))
    with set_default_dtype(dtype):
        model = config.instantiate(cfg.model)
    adapters = get_adapter_params(model)
    set_trainable_params(model, adapters)
    optimizer = torch.optim.AdamW(adapters.values(), lr=1e-4)
    loss_fn = ChunkedCrossEntropyLoss()
    vocab, batch = int(cfg.model.vocab_size), int(cfg.batch_size)
    start, stop = map(int, args.lengths.split(":"))
    multiple = args.pad_to_multiple_of
    lengths = [-(-n // multiple) * multiple for n in range(start, stop)]

    print(f"{args.config} {args.dtype}, batch {batch}, lengths {start}..{stop - 1} ({len(set(lengths))} distinct after "
          f"padding to a multiple of {multiple}), {args.passes} passes")
    print(f"{'pass':>4} {'steps':>5} {'peak MiB':>9} {'rss MiB':>8} {'malloc free MiB':>16} {'peak growth per step MiB':>25}")
    for p in range(args.passes):
        before = status_bytes("VmHWM")
        if args.shuffle:
            lengths = [lengths[i] for i in torch.randperm(len(lengths)).tolist()]
        for length in lengths:
            tokens = torch.randint(0, vocab, (batch, length))
            loss, count = loss_fn(model(tokens, return_hidden=True), model.output, tokens)
            (loss / count).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        peak = status_bytes("VmHWM")
        print(f"{p + 1:>4} {len(lengths):>5} {peak / _MIB:>9.1f} {status_bytes('VmRSS') / _MIB:>8.1f} "
              f"{malloc_free_bytes() / _MIB:>16.1f} {(peak - before) / _MIB / len(lengths):>25.2f}", flush=True)


if __name__ == "__main__":
    main()
