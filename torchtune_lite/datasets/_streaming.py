"""Supervised fine-tuning data read as it is used (`streaming=True`): rows are tokenized one at a time, so
a file bigger than memory trains without being read whole. The epoch's length is unknown; the recipe
runs `max_steps_per_epoch` steps of it."""

from __future__ import annotations

from typing import Any, Iterator

from torch.utils.data import IterableDataset

from torchtune_lite.data.stats import DataStats
from torchtune_lite.datasets._sft import SFTDataset, ToMessages, maybe_pack, tokenize_row

SHUFFLE_BUFFER = 1000  # rows held for a streaming shuffle: enough to mix neighbours, small beside memory


class StreamingSFTDataset(IterableDataset):
    """Yields `{"tokens", "labels"}` like `SFTDataset`, from a `datasets.IterableDataset` of rows.

    `configure(rank, world_size, shuffle, seed)` (called by `build_dataloader`) gives each rank every
    `world_size`-th row, and shuffles within a buffer; `set_epoch` reshuffles per epoch, so a resumed run
    replays the same order. Truncation and dropping follow `SFTDataset`; counts accumulate in `stats`.
    """

    def __init__(self, rows, to_messages: ToMessages, tokenizer, name: str, keep_answer: bool = True,
                 prompt_format: str = "chat") -> None:
        self.source_rows, self.rows = rows, rows
        self.to_messages, self.tokenizer, self.name = to_messages, tokenizer, name
        self.keep_answer, self.prompt_format = keep_answer, prompt_format
        self.stats = DataStats()
        self.rank, self.world_size, self.seed = 0, 1, 0

    def configure(self, *, rank: int, world_size: int, shuffle: bool, seed: int) -> None:
        from datasets.distributed import split_dataset_by_node

        self.rank, self.world_size, self.seed = rank, world_size, seed
        rows = split_dataset_by_node(self.source_rows, rank=rank, world_size=world_size) if world_size > 1 else self.source_rows
        self.rows = rows.shuffle(seed=seed, buffer_size=SHUFFLE_BUFFER) if shuffle else rows

    def set_epoch(self, epoch: int) -> None:
        self.rows.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict[str, list[int]]]:
        for index, row in enumerate(self.rows):
            # the row's number in the file when unshuffled (rank r of w reads rows r, r + w, ...)
            sample = tokenize_row(index * self.world_size + self.rank, row, self.to_messages, self.tokenizer,
                                  self.name, self.keep_answer, self.stats)
            if sample is not None:
                yield sample

    def summary(self, batch_size: int) -> str:
        return f"Data: streaming {self.name}: rows are read and tokenized as training uses them (no totals up front)"


def sft_dataset(rows, to_messages: ToMessages, tokenizer, name: str, *, streaming: bool, packed: bool,
                **kwargs: Any):
    """`SFTDataset` (packed if asked) or, for streamed rows, `StreamingSFTDataset`."""
    if streaming:
        if packed:
            raise ValueError("packed=True with streaming=True is not supported: packing needs the samples up front; "
                             "stream unpacked, or load the file without streaming")
        return StreamingSFTDataset(rows, to_messages, tokenizer, name, **kwargs)
    return maybe_pack(SFTDataset(rows, to_messages, tokenizer, name, **kwargs), tokenizer, packed)

