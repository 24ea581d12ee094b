"""Preference data: rows of (prompt, chosen, rejected) in any of the shapes `data.preference` reads."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Iterable, Literal, Optional

from torch.utils.data import Dataset

from torchtune_lite.data import Message, format_alpaca_prompt, load_rows
from torchtune_lite.data.columns import RowError, check_column_map
from torchtune_lite.data.file_loading import DataFileError
from torchtune_lite.data.preference import COLUMNS, PreferencePair, pair_from_row, tokenize_pair
from torchtune_lite.data.stats import DataStats, padding_fraction, summary_line


class PreferenceDataset(Dataset):
    """`{"chosen_tokens", "chosen_labels", "rejected_tokens", "rejected_labels"}` per pair, tokenized up front
    (labels are the answer's tokens, the ignore index elsewhere; not shifted). A bad row is an error naming
    the file and row (1-based); cut and dropped pairs are counted in one warning and in `stats`."""

    def __init__(self, rows: Iterable[dict[str, Any]], tokenizer, name: str, columns: Optional[dict[str, str]] = None,
                 prompt_format: Literal["chat", "alpaca"] = "chat", new_system_prompt: Optional[str] = None) -> None:
        self.name = name
        self.prompt_format = prompt_format  # saved with checkpoints, so generation builds prompts the same way
        self.stats = DataStats()
        self.samples: list[dict[str, list[int]]] = []
        for index, row in enumerate(rows):
            self.stats.rows += 1
            try:
                pair = _formatted(pair_from_row(row, columns), prompt_format, new_system_prompt)
            except RowError as err:
                raise DataFileError(f"{name} row {index + 1}: {err}") from None
            sample = tokenize_pair(tokenizer, pair, self.stats)
            if sample is not None:
                self.samples.append(sample)
        if self.stats.truncated or self.stats.dropped_too_long:
            warnings.warn(
                f"{name}: {self.stats.truncated} of {self.stats.rows} pairs were longer than max_seq_len={tokenizer.max_seq_len} "
                f"and lost prompt tokens (answers kept whole); dropped {self.stats.dropped_too_long} whose answer alone is longer"
            )
        if not self.samples:
            raise DataFileError(f"{name}: no preference pairs left to train on: check the data and max_seq_len")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.samples[index]

    def summary(self, batch_size: int) -> str:
        lengths = [max(len(s["chosen_tokens"]), len(s["rejected_tokens"])) for s in self.samples]
        return summary_line(self.stats, padding=padding_fraction(lengths, batch_size)).replace(" samples of", " pairs of", 1)


def _formatted(pair: PreferencePair, prompt_format: str, new_system_prompt: Optional[str]) -> PreferencePair:
    prompt = list(pair.prompt)
    if prompt_format == "alpaca":  # the last user turn in the Alpaca template, as instruct_dataset trains it
        last = max(i for i, m in enumerate(prompt) if m.role == "user")
        prompt[last] = dataclasses.replace(prompt[last], content=format_alpaca_prompt(prompt[last].content))
    if new_system_prompt:
        prompt = [Message("system", new_system_prompt, masked=True)] + [m for m in prompt if m.role != "system"]
    return dataclasses.replace(pair, prompt=tuple(prompt))


def preference_dataset(
    tokenizer,
    *,
    source: str = "json",
    data_files: Any = None,
    split: str = "train",
    column_map: Optional[dict[str, str]] = None,
    prompt_format: Literal["chat", "alpaca"] = "chat",
    new_system_prompt: Optional[str] = None,
) -> PreferenceDataset:
    """Pairs of answers to one prompt, the chosen one preferred, for DPO, IPO and SimPO.

    Reads `prompt`/`chosen`/`rejected` as strings, `chosen`/`rejected` as message lists (the answers beside a
    prompt, or whole conversations sharing their first turns), or Anthropic-HH transcripts (no prompt
    column). `column_map` maps those names to the file's columns or paths (`{prompt: question}`).
    `prompt_format="alpaca"` puts the last user turn in the Alpaca template (as `instruct_dataset` does);
    `new_system_prompt` replaces the rows' system turns. `source`/`data_files`/`split` are `load_dataset`'s.
    """
    if prompt_format not in ("chat", "alpaca"):
        raise ValueError(f"dataset.prompt_format={prompt_format!r} is unknown: use 'chat' or 'alpaca'")
    columns = check_column_map(column_map, COLUMNS)
    rows = load_rows(source, data_files, split=split)
    return PreferenceDataset(rows, tokenizer, name=str(data_files or source), columns=columns,
                             prompt_format=prompt_format, new_system_prompt=new_system_prompt)
