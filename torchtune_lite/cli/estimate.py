"""`tune estimate --config <name|path> [key=value ...] [--seq-len N|data]`: a config's peak memory, part by
part (weights, adapters, gradients, optimizer states, activations), worked out without allocating it."""

from __future__ import annotations

import argparse

from torchtune_lite.cli._errors import fail
from torchtune_lite.config import load_config, run_reporting_errors


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("estimate", help="estimate a config's peak training memory without running it")
    parser.add_argument("--config", required=True, help="config name or YAML path")
    parser.add_argument("overrides", nargs="*", help="key=value overrides (e.g. batch_size=4 device=cuda)")
    parser.add_argument(
        "--seq-len", default=None,
        help="padded batch length: a number, or 'data' for the data set's longest sample (default: tokenizer.max_seq_len)",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    seq_len = args.seq_len
    if seq_len is not None and seq_len != "data" and not (seq_len.isdigit() and int(seq_len) > 0):
        fail(f"--seq-len {seq_len} must be a positive number or 'data'")

    def estimate() -> None:
        from torchtune_lite.training.memory_estimate import estimate_memory, run_batch_shapes, sample_lengths

        cfg = load_config(args.config, args.overrides)
        if seq_len == "data":  # the data's own lengths: the longest batch, and how many batch lengths the run meets
            lengths, num_samples = sample_lengths(cfg)
            print(estimate_memory(cfg, seq_len=max(lengths), batch_shapes=run_batch_shapes(cfg, lengths, num_samples)).table())
        else:
            print(estimate_memory(cfg, seq_len=int(seq_len) if seq_len else None).table())

    run_reporting_errors(estimate)
