"""Supervised fine-tuning data: rows -> messages -> tokens and labels, tokenized once up front."""

from __future__ import annotations

import warnings
from typing import Any, Callable, Iterable, Optional, Union

from torch.utils.data import Dataset

from torchtune_lite.data import CROSS_ENTROPY_IGNORE_IDX, Message, PackedDataset
from torchtune_lite.data.columns import RowError
from torchtune_lite.data.file_loading import DataFileError
from torchtune_lite.data.stats import DataStats, padding_fraction, summary_line
from torchtune_lite.data.truncation import fit_keeping_answer, truncate_sample

ToMessages = Callable[[dict], list[Message]]


class SFTDataset(Dataset):
    """`{"tokens": list[int], "labels": list[int]}` per sample; labels are the tokens where trained on and
    the ignore index elsewhere, not shifted (the training loop shifts).

    A sample longer than the tokenizer's `max_seq_len` keeps its last answer: the oldest turns go first,
    then the start of the prompt; it is dropped only when the answer alone is too long (`keep_answer=False`,
    for plain text, cuts the end instead). Counts go into one warning and `stats`.
    """

    def __init__(self, rows: Iterable[dict[str, Any]], to_messages: ToMessages, tokenizer, name: str,
                 keep_answer: bool = True, prompt_format: str = "chat") -> None:
        self.name = name
        self.prompt_format = prompt_format  # how the user turn was built: saved with checkpoints for generation
        self.samples: list[dict[str, list[int]]] = []
        self.stats = DataStats()
        for index, row in enumerate(rows):
            self.stats.rows += 1
            sample = tokenize_row(index, row, to_messages, tokenizer, name, keep_answer, self.stats)
            if sample is not None:
                self.samples.append(sample)
        warn_about_cut_samples(self.stats, name, tokenizer.max_seq_len, keep_answer)
        if not self.samples:
            raise DataFileError(f"{name}: no samples left to train on: check the data and train_on_input / max_seq_len")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.samples[index]

    def summary(self, batch_size: int) -> str:
        """One line for the setup log (padding over one shuffled epoch of `batch_size` batches)."""
        return summary_line(self.stats, padding=padding_fraction([len(s["tokens"]) for s in self.samples], batch_size))


def tokenize_row(index: int, row: dict, to_messages: ToMessages, tokenizer, name: str, keep_answer: bool,
                 stats: DataStats) -> Optional[dict[str, list[int]]]:
    """One row as a sample (None when it is dropped, counted in `stats`); a bad row is an error naming
    the file and its row number (1-based, as an editor shows JSON Lines)."""
    try:
        messages = to_messages(row)
    except RowError as err:
        raise DataFileError(f"{name} row {index + 1}: {err}") from None
    limit = tokenizer.max_seq_len
    tokens, mask = tokenizer.tokenize_messages(messages, truncate=False)
    if limit is not None and len(tokens) > limit:
        fitted = fit_keeping_answer(messages, tokenizer, limit) if keep_answer else \
            truncate_sample(tokens, mask, limit, tokenizer.eos_id)
        if fitted is None:
            stats.dropped_too_long += 1
            return None
        tokens, mask = fitted
        stats.truncated += 1
    labels = [CROSS_ENTROPY_IGNORE_IDX if m else t for t, m in zip(tokens, mask)]
    trained = sum(label != CROSS_ENTROPY_IGNORE_IDX for label in labels[1:])
    if len(tokens) < 2 or trained == 0:
        stats.dropped_nothing_to_train += 1
        return None
    stats.samples += 1
    stats.tokens += len(tokens)
    stats.trained_tokens += trained
    return {"tokens": tokens, "labels": labels}


def warn_about_cut_samples(stats: DataStats, name: str, limit: Optional[int], keep_answer: bool) -> None:
    """One warning with every count, so a user sees at setup how much of the data was cut or left out."""
    how = "oldest turns first, then the prompt's start; answers kept whole" if keep_answer else "cut at the end"
    parts = [f"{stats.truncated} of {stats.rows} samples were longer than max_seq_len={limit} and were truncated ({how})"
             if stats.truncated else "",
             f"dropped {stats.dropped_too_long} of {stats.rows} whose answer alone is longer than max_seq_len={limit}"
             if stats.dropped_too_long else "",
             f"skipped {stats.dropped_nothing_to_train} of {stats.rows} samples with nothing to train on (all masked or empty)"
             if stats.dropped_nothing_to_train else ""]
    if any(parts):
        warnings.warn(f"{name}: " + "; ".join(p for p in parts if p))


def maybe_pack(ds: SFTDataset, tokenizer, packed: bool) -> Union[SFTDataset, PackedDataset]:
    if not packed:
        return ds
    if tokenizer.max_seq_len is None:
        raise ValueError("packed=True needs tokenizer.max_seq_len: set it to the row length to pack into")
    return PackedDataset(ds, tokenizer.max_seq_len, padding_idx=tokenizer.pad_id)
