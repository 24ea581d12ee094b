"""Every model test compares fp32 numerics with transformers: pin the dtype and the thread count (fp32 sums
split over a different number of threads differ in the last bits). One thread: the same on every machine,
and no contention with the other test worker (the suite runs under pytest-xdist)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _fp32_one_thread():
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_num_threads(threads)
    torch.set_default_dtype(dtype)
