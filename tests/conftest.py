"""Suite-wide: each pytest-xdist worker computes on its share of the cores; `C_COMPILER` for the C-kernel tests.

`pytest -n 2` (the README's test command) runs two workers; torch would otherwise give each of them every
core, and OpenMP threads that spin on cores another worker is using run many times slower.
"""

import os
import shutil

import torch

# The C kernels (torchtune_lite/kernels) build with this; without it their callers run torch ops only, and the
# tests of the kernel path skip.
C_COMPILER = shutil.which(os.environ.get("CC", "cc"))

_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _workers))
