"""Packing: many short samples concatenated into fixed-length rows, so no compute goes to padding."""

from __future__ import annotations

from torch.utils.data import Dataset

from torchtune_lite.data.collate import CROSS_ENTROPY_IGNORE_IDX
from torchtune_lite.data.stats import DataStats, summary_line


class PackedDataset(Dataset):
    """Greedily fills rows of `max_seq_len` tokens with whole samples (a longer sample is cut).

    Each row has `tokens`, `labels`, `input_pos` (restarting at 0 for every sample, so RoPE sees each
    sample as if alone) and `seq_lens` (for the block-diagonal mask). Each sample's first label is
    ignored: after the loop's shift it would be the target of the previous sample's last token, and no
    sample should learn to predict the start of an unrelated one.
    """

    def __init__(self, ds: Dataset, max_seq_len: int, padding_idx: int = 0) -> None:
        self.max_seq_len = max_seq_len
        self.stats = getattr(ds, "stats", None)  # the packed samples' counts, for the setup summary
        self.prompt_format = getattr(ds, "prompt_format", None)
        self.rows: list[dict] = []
        self.samples = self.real_tokens = 0
        row = self._empty()
        for i in range(len(ds)):
            sample = ds[i]
            tokens, labels = sample["tokens"][:max_seq_len], sample["labels"][:max_seq_len]
            if len(row["tokens"]) + len(tokens) > max_seq_len:
                self._finish(row, padding_idx)
                row = self._empty()
            row["tokens"] += tokens
            self.samples, self.real_tokens = self.samples + 1, self.real_tokens + len(tokens)
            row["labels"] += [CROSS_ENTROPY_IGNORE_IDX] + labels[1:]
            row["input_pos"] += list(range(len(tokens)))
            row["seq_lens"].append(len(tokens))
        if row["tokens"]:
            self._finish(row, padding_idx)

    @staticmethod
    def _empty() -> dict:
        return {"tokens": [], "labels": [], "input_pos": [], "seq_lens": []}

    def _finish(self, row: dict, padding_idx: int) -> None:
        pad = self.max_seq_len - len(row["tokens"])
        if pad:
            row["tokens"] += [padding_idx] * pad
            row["labels"] += [CROSS_ENTROPY_IGNORE_IDX] * pad
            row["input_pos"] += list(range(pad))
            row["seq_lens"].append(pad)
        self.rows.append(row)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]

    def summary(self, batch_size: int) -> str:
        """One line for the setup log: the samples' counts and how full the packed rows are."""
        stats = self.stats or DataStats(rows=self.samples, samples=self.samples, tokens=self.real_tokens)
        return summary_line(stats, packed_rows=len(self.rows), max_seq_len=self.max_seq_len, packed_tokens=self.real_tokens)
