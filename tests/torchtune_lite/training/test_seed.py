import random

import numpy as np
import pytest
import torch

from torchtune_lite.training.seed import get_rng_state, set_rng_state, set_seed


def _draw():
    return random.random(), float(np.random.rand()), np.random.randn(), torch.rand(3).tolist(), torch.randn(2).tolist()


def test_same_seed_same_numbers_in_every_library():
    assert set_seed(123) == 123
    first = _draw()
    set_seed(123)
    assert _draw() == first
    set_seed(124)
    assert _draw() != first


def test_none_picks_a_seed_that_reproduces():
    seed = set_seed(None)
    assert isinstance(seed, int) and 0 <= seed < 2**31
    first = _draw()
    set_seed(seed)
    assert _draw() == first


@pytest.mark.parametrize("bad", [-1, 1.5, "7", True])
def test_bad_seed(bad):
    with pytest.raises(ValueError, match="non-negative integer"):
        set_seed(bad)


def test_state_survives_weights_only_save_and_load(tmp_path):
    set_seed(5)
    np.random.randn()  # leaves a cached gaussian in numpy's state, which must round-trip too
    random.gauss(0, 1)
    torch.save(get_rng_state(), tmp_path / "rng.pt")
    expected = _draw()

    set_seed(999)
    _draw()
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert _draw() == expected


def test_incomplete_state_is_an_error():
    with pytest.raises(ValueError, match="lacks"):
        set_rng_state({"numpy": []})


def test_cuda_states_saved_on_more_gpus_restore_on_the_ones_this_host_has(monkeypatch):
    # Saved on 8 GPUs, resumed on 2: only devices 0 and 1 get (their own) states back.
    saved = get_rng_state()
    saved["cuda"] = [torch.full((16,), i, dtype=torch.uint8) for i in range(8)]
    restored = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": restored.__setitem__(device, int(state[0])))
    set_rng_state(saved)
    assert restored == {0: 0, 1: 1}
