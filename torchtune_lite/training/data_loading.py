"""Data loader construction shared by the single-device and distributed recipes."""

from typing import Callable

from torch.utils.data import DataLoader, Dataset, DistributedSampler


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
) -> tuple[DataLoader, DistributedSampler]:
    """A DistributedSampler even on one device, so the order depends only on (seed, epoch) and a
    resumed run replays it exactly; the training loop skips the batches already consumed."""
    if len(dataset) == 0:
        raise ValueError("the data set is empty: check dataset.data_files and the column names")
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn, drop_last=drop_last, num_workers=num_workers
    )
    return loader, sampler
