"""The setup summary: padding over shuffled batches and packing efficiency, checked by hand."""

from __future__ import annotations

from torchtune_lite.data import PackedDataset
from torchtune_lite.data.stats import DataStats, padding_fraction, summary_line


def test_padding_fraction_by_hand():
    # one batch of [2, 4]: 8 positions, 6 tokens
    assert padding_fraction([2, 4], batch_size=2) == 0.25
    assert padding_fraction([3, 3, 3], batch_size=2) == 0.0
    assert padding_fraction([5, 1, 2, 7], batch_size=1) == 0.0


def test_summary_line_counts():
    stats = DataStats(rows=10, samples=8, tokens=400, trained_tokens=100, truncated=2, dropped_too_long=1, dropped_nothing_to_train=1)
    assert summary_line(stats, padding=0.234) == (
        "Data: 8 samples of 10 rows, 400 tokens (25% trained); 2 truncated, 1 dropped (answer longer than max_seq_len), "
        "1 dropped (nothing to train on); padding 23.4% of batch positions")


def test_packed_summary_reports_efficiency():
    samples = [{"tokens": [1] * n, "labels": [1] * n} for n in (5, 4, 6)]  # rows: [5], [4, 6]? no: 5+4 <= 10, then 6
    packed = PackedDataset(samples, max_seq_len=10)
    assert [r["seq_lens"] for r in packed] == [[5, 4, 1], [6, 4]]
    assert packed.summary(batch_size=2).endswith("packed into 2 rows of 10: 75.0% of positions hold tokens")
