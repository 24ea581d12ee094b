"""Data loader construction and mid-epoch resume, shared by the single-device and distributed recipes.

How a recipe resumes mid-epoch: the loader always draws from a `DistributedSampler` (also on one device),
whose order depends only on (seed, epoch, rank, world_size). The recipe saves `epoch` and how many
batches of that epoch were consumed (optimizer steps x gradient_accumulation_steps); on resume it calls
`epoch_batches(loader, sampler, epoch, skip_batches=consumed)`, which sets the epoch and replays the same
order past the consumed batches. The samples are re-read by the loader but not used, so collation and
tokenization stay identical to the uninterrupted run. Resume with the same seed, batch_size and world_size.
"""

import functools
import itertools
from typing import Any, Callable, Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset


def collate_for(dataset: Dataset, pad_id: int) -> Callable:
    """The batch collator for a data set: packed samples keep their block-causal masks; preference pairs
    become their chosen rows then their rejected rows; others are padded."""
    from torchtune_lite.data import PackedDataset, padded_collate_packed, padded_collate_sft
    from torchtune_lite.data.preference import collate_preference
    from torchtune_lite.datasets import PreferenceDataset

    if isinstance(dataset, PackedDataset):
        return padded_collate_packed
    if isinstance(dataset, PreferenceDataset):
        return functools.partial(collate_preference, padding_idx=pad_id)
    return functools.partial(padded_collate_sft, padding_idx=pad_id)


def build_dataloader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    collate_fn: Callable,
    drop_last: bool = True,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> tuple[DataLoader, DistributedSampler]:
    """A loader over this rank's shard of `dataset` and its sampler (call `set_epoch` each epoch, or use
    `epoch_batches`). `drop_last` drops both the uneven tail across ranks and the last partial batch,
    so every step sees `batch_size` samples per rank. `pin_memory` (for CUDA training) puts batches in
    page-locked memory, without which `.to(device, non_blocking=True)` copies synchronously."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} is outside world_size={world_size}")
    if isinstance(dataset, IterableDataset):
        return _streaming_loader(dataset, batch_size=batch_size, shuffle=shuffle, seed=seed, collate_fn=collate_fn,
                                 drop_last=drop_last, rank=rank, world_size=world_size, pin_memory=pin_memory)
    if not hasattr(dataset, "__len__"):
        raise TypeError(f"{type(dataset).__name__} has no length: build_dataloader needs a map-style or iterable data set")
    if len(dataset) == 0:
        raise ValueError(f"the data set ({type(dataset).__name__}) is empty: check its data files and column names")
    sampler = DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
    )
    # Each `iter(loader)` draws the workers' base seed from this generator. Without one it would draw from
    # the global torch RNG, so a resumed run (RNG restored, then `iter` again) would drift from the
    # uninterrupted run's dropout masks. `epoch_batches` reseeds it per epoch.
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate_fn,
        drop_last=drop_last,
        num_workers=num_workers,
        generator=generator,
        pin_memory=pin_memory,
    )
    if len(loader) == 0:
        raise ValueError(
            f"the data set has {len(dataset)} samples, fewer than batch_size={batch_size} x world_size={world_size}: "
            "lower batch_size, add data or set drop_last=False"
        )
    return loader, sampler


def _streaming_loader(dataset: IterableDataset, *, batch_size: int, shuffle: bool, seed: int, collate_fn: Callable,
                      drop_last: bool, rank: int, world_size: int, pin_memory: bool) -> tuple[DataLoader, Any]:
    """A streamed data set shards and shuffles itself (`configure`: every world_size-th row, a shuffle buffer
    reseeded per epoch by `set_epoch`), so it stands in for the sampler. One process reads it: workers would
    each read the whole stream."""
    configure = getattr(dataset, "configure", None)
    if configure is None:
        raise TypeError(f"{type(dataset).__name__} cannot be split over ranks: use a map-style data set, or a stream "
                        "with configure(rank, world_size, shuffle, seed) (datasets' streaming=True builds one)")
    configure(rank=rank, world_size=world_size, shuffle=shuffle, seed=seed)
    dataset.seed = seed
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_fn, drop_last=drop_last, pin_memory=pin_memory)
    return loader, dataset


def batches_per_epoch(dataloader: DataLoader) -> Optional[int]:
    """The batches in an epoch, or None for a streamed data set (its length is unknown until it ends)."""
    return None if isinstance(getattr(dataloader, "dataset", None), IterableDataset) else len(dataloader)


def epoch_batches(
    dataloader: DataLoader,
    sampler: Any,
    epoch: int,
    *,
    skip_batches: int = 0,
    max_batches: Optional[int] = None,
) -> Iterator[Any]:
    """The batches of `epoch` in the sampler's deterministic order, starting after `skip_batches`
    (batches a resumed run already consumed) and ending before batch `max_batches` (if given)."""
    if skip_batches < 0:
        raise ValueError(f"skip_batches={skip_batches} must be >= 0")
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    if dataloader.generator is not None:
        dataloader.generator.manual_seed(getattr(sampler, "seed", 0) + epoch)
    total = batches_per_epoch(dataloader)
    stop = total if max_batches is None else (max_batches if total is None else min(max_batches, total))
    return itertools.islice(iter(dataloader), skip_batches, None if stop is None else max(stop, skip_batches))
