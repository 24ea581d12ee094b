"""Suite-wide: each pytest-xdist worker computes on its share of the cores; `C_COMPILER` for the C-kernel tests.

`pytest -n 2` (the README's test command) runs two workers; torch would otherwise give each of them every
core, and OpenMP threads that spin on cores another worker is using run many times slower.
"""

import os
import shutil

import pytest
import torch

# The C kernels (torchtune_lite/kernels) build with this; without it their callers run torch ops only, and the
# tests of the kernel path skip.
C_COMPILER = shutil.which(os.environ.get("CC", "cc"))

_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _workers))


@pytest.fixture(params=["c_kernel", "torch_ops"])
def kernel_path(request, monkeypatch):
    """Runs a test twice: with the fused C kernels (skipped without a compiler) and with the torch ops every
    caller falls back to. Use as `pytestmark = pytest.mark.usefixtures("kernel_path")` or by name."""
    if request.param == "c_kernel" and C_COMPILER is None:
        pytest.skip("no C compiler here: the C kernels cannot build, only the torch ops run")
    monkeypatch.setenv("TORCHTUNE_LITE_C_KERNELS", "1" if request.param == "c_kernel" else "0")
    return request.param
