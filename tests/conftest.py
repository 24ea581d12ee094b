"""Suite-wide: each pytest-xdist worker computes on its share of the cores.

`pytest -n 2` (the README's test command) runs two workers; torch would otherwise give each of them every
core, and OpenMP threads that spin on cores another worker is using run many times slower.
"""

import os

import torch

_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _workers))
