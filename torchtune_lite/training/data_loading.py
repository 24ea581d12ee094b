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


def collate_for(packed: bool, pad_id: int) -> Callable:
    """The batch collator for a data set: packed samples keep their block-causal masks; others are padded."""
    from torchtune_lite.data import padded_collate_packed, padded_collate_sft

    if packed:
        return padded_collate_packed
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
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        raise TypeError(f"{type(dataset).__name__} has no length: build_dataloader needs a map-style data set")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} is outside world_size={world_size}")
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
    stop = len(dataloader) if max_batches is None else min(max_batches, len(dataloader))
    return itertools.islice(iter(dataloader), skip_batches, max(stop, skip_batches))
