"""Data-set statistics printed at setup, so a user sees what trains: samples, tokens, what was cut, padding."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional, Sequence


@dataclass
class DataStats:
    """Counts gathered while a data set is tokenized."""

    rows: int = 0
    samples: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    truncated: int = 0
    dropped_too_long: int = 0
    dropped_nothing_to_train: int = 0


def padding_fraction(lengths: Sequence[int], batch_size: int, seed: int = 0) -> float:
    """The share of positions in right-padded batches that are padding, over one shuffled epoch."""
    order = list(lengths)
    random.Random(seed).shuffle(order)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    padded = sum(max(b) * len(b) for b in batches)
    return 1 - sum(order) / padded if padded else 0.0


def summary_line(stats: DataStats, *, padding: Optional[float] = None, packed_rows: Optional[int] = None,
                 max_seq_len: Optional[int] = None, packed_tokens: int = 0) -> str:
    """`Data: 950 samples of 1000 rows, 210,113 tokens (41% trained); 30 truncated, ...; padding 23%`."""
    cut = (f"{stats.truncated} truncated, {stats.dropped_too_long} dropped (answer longer than max_seq_len), "
           f"{stats.dropped_nothing_to_train} dropped (nothing to train on)")
    trained = stats.trained_tokens / stats.tokens if stats.tokens else 0.0
    line = f"Data: {stats.samples} samples of {stats.rows} rows, {stats.tokens:,} tokens ({trained:.0%} trained); {cut}"
    if packed_rows is not None:
        efficiency = packed_tokens / (packed_rows * max_seq_len) if packed_rows else 0.0
        return f"{line}; packed into {packed_rows} rows of {max_seq_len}: {efficiency:.1%} of positions hold tokens"
    if padding is not None:
        return f"{line}; padding {padding:.1%} of batch positions"
    return line
