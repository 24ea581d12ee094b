import pytest
import torch
from torch.utils.data import Dataset, IterableDataset

from torchtune_lite.training.data_loading import build_dataloader, epoch_batches


class Numbers(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def collate(items):
    return torch.tensor(items)


def _build(n=20, batch_size=3, **kw):
    kw = {"shuffle": True, "seed": 7, "collate_fn": collate, **kw}
    return build_dataloader(Numbers(n), batch_size=batch_size, **kw)


def _epoch(loader, sampler, epoch, **kw):
    return [b.tolist() for b in epoch_batches(loader, sampler, epoch, **kw)]


def test_order_depends_only_on_seed_and_epoch():
    loader, sampler = _build()
    assert len(loader) == 20 // 3  # drop_last: only full batches
    e0, e1 = _epoch(loader, sampler, 0), _epoch(loader, sampler, 1)
    assert all(len(b) == 3 for b in e0)
    assert e0 != e1  # reshuffled each epoch
    other_loader, other_sampler = _build()
    assert _epoch(other_loader, other_sampler, 1) == e1  # a fresh process replays epoch 1 exactly
    assert _epoch(*_build(seed=8), 0) != e0


def test_resume_mid_epoch_skips_consumed_batches():
    loader, sampler = _build()
    full = _epoch(loader, sampler, 1)
    resumed_loader, resumed_sampler = _build()
    assert _epoch(resumed_loader, resumed_sampler, 1, skip_batches=2) == full[2:]
    assert _epoch(resumed_loader, resumed_sampler, 1, skip_batches=2, max_batches=4) == full[2:4]
    assert _epoch(resumed_loader, resumed_sampler, 1, skip_batches=10) == []


def test_ranks_split_the_data_without_overlap():
    shards = [_epoch(*_build(n=24, batch_size=2, rank=r, world_size=3), 0) for r in range(3)]
    seen = [i for shard in shards for batch in shard for i in batch]
    assert sorted(seen) == list(range(24))
    single = _epoch(*_build(n=24, batch_size=2), 0)
    assert sorted(i for b in single for i in b) == list(range(24))


def test_no_shuffle_keeps_dataset_order():
    assert _epoch(*_build(n=6, batch_size=2, shuffle=False), 3) == [[0, 1], [2, 3], [4, 5]]


def test_drop_last_false_keeps_the_partial_batch():
    assert _epoch(*_build(n=5, batch_size=2, shuffle=False, drop_last=False), 0) == [[0, 1], [2, 3], [4]]


def test_global_rng_is_not_consumed_by_iteration():
    # A resumed run restores the torch RNG and then iterates: iterating must not shift it (dropout masks).
    loader, sampler = _build()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    _epoch(loader, sampler, 0)
    torch.testing.assert_close(torch.rand(3), expected)


def test_user_errors():
    with pytest.raises(ValueError, match="empty"):
        _build(n=0)
    with pytest.raises(ValueError, match="fewer than batch_size=8"):
        _build(n=5, batch_size=8)
    with pytest.raises(ValueError, match="batch_size=0"):
        _build(batch_size=0)
    with pytest.raises(ValueError, match="rank=2"):
        _build(rank=2, world_size=2)

    class Stream(IterableDataset):
        def __iter__(self):
            yield 1

    with pytest.raises(TypeError, match="map-style"):
        build_dataloader(Stream(), batch_size=1, shuffle=False, seed=0, collate_fn=collate)


# ---------------------------------------------------------------- ranks of a run with `seed: null`
def _ranks_epoch_with_drawn_seed(rank: int, world_size: int, n: int, consumed: int) -> dict:
    """One rank's epoch 1 with no configured seed, then a resumed run (a fresh seed draw would differ)
    that restores the saved seed and skips the `consumed` batches."""
    from torchtune_lite.training.seed import seed_for_run

    seed = seed_for_run(None)
    uninterrupted = _epoch(*_build(n, batch_size=2, seed=seed, rank=rank, world_size=world_size), 1)
    resumed_seed = seed_for_run(None, saved=seed)
    resumed = _epoch(*_build(n, batch_size=2, seed=resumed_seed, rank=rank, world_size=world_size), 1, skip_batches=consumed)
    return {"seed": seed, "batches": uninterrupted, "resumed": resumed}


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_without_a_seed_share_one_and_split_the_epoch_and_resume_it(world_size):
    from tests.torchtune_lite.training.ranks import run_on_ranks

    n = 12 * world_size  # 6 batches of 2 per rank
    results = run_on_ranks(world_size, _ranks_epoch_with_drawn_seed, n, 4)
    assert len({r["seed"] for r in results}) == 1  # rank 0's draw, broadcast
    seen = [i for r in results for batch in r["batches"] for i in batch]
    assert sorted(seen) == list(range(n))  # disjoint shares that cover the epoch
    assert seen != sorted(seen)  # and shuffled
    for r in results:
        assert len(r["batches"]) == 6 and r["resumed"] == r["batches"][4:]
