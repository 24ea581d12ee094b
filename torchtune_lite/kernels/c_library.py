"""Small C kernels for the CPU: compiled from a `.c` file beside their module on first use, loaded through ctypes.

Why C without torch headers: a kernel file builds with the system compiler in about a second, where a
torch C++ extension takes a minute (its headers), so every run and model size can use the kernels. ctypes
releases the GIL during a call, so `run_in_row_parts` spreads rows over torch's thread count with plain
threads. Builds are cached per source text and compiler flags (which follow the CPU's vector units), in
`$XDG_CACHE_HOME/torchtune_lite/kernels`. No compiler, a failed build, or `TORCHTUNE_LITE_C_KERNELS=0`:
`load` gives None and callers keep their torch path.
"""

import ctypes
import functools
import hashlib
import logging
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

import torch

_log = logging.getLogger(__name__)


def enabled() -> bool:
    """Whether C kernels may run here: not switched off, and not while torch.compile traces (it fuses its own)."""
    # is_compiling first: torch.compile then never traces the environment read (a graph break inside autograd
    # Functions such as attention's made the first compiled step of the tiny model several times slower)
    return not torch.compiler.is_compiling() and os.environ.get("TORCHTUNE_LITE_C_KERNELS", "1") != "0"


def isa_flags() -> list[str]:
    """Compiler flags for the vector units torch itself detected on this CPU (none off x86)."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability.startswith("AVX512"):
        return ["-mavx512f", "-mavx512bw", "-mavx2", "-mfma"]
    if capability.startswith("AVX2"):
        return ["-mavx2", "-mfma"]
    return []


@functools.lru_cache(maxsize=None)
def load(source: Path) -> Optional[ctypes.CDLL]:
    """The compiled library of C file `source` (built on first use, then cached), or None if it cannot build."""
    flags = ["-O3", "-fPIC", "-shared", "-fopenmp-simd", *isa_flags()]
    headers = "".join(h.read_text() for h in sorted(source.parent.glob("*.h")))  # what `#include "..."` may pull in
    digest = hashlib.sha256((source.read_text() + headers + " ".join(flags)).encode()).hexdigest()[:12]
    path = _cache_dir() / f"{source.stem}_{digest}.so"
    try:
        if not path.exists():
            _build(source, flags, path)
        return ctypes.CDLL(str(path))
    except (OSError, subprocess.CalledProcessError) as err:
        _log.warning("C kernel %s unavailable (%s); using torch ops", source.name, str(err).splitlines()[0])
        return None


def function(source: Path, name: str, argtypes: list, restype=None) -> Optional[Callable]:
    """C function `name` of `source`'s library with its ctypes signature (returning `restype`, a ctypes type
    or None for void), or None when the library is missing."""
    return _function(source, name, tuple(argtypes), restype)


@functools.lru_cache(maxsize=None)
def _function(source: Path, name: str, argtypes: tuple, restype) -> Optional[Callable]:
    # Cached: kernels are called about a thousand times a step, and ctypes' lookup is not free.
    library = load(source)
    if library is None:
        return None
    fn = getattr(library, name)
    fn.argtypes, fn.restype = list(argtypes), restype
    return fn


def run_in_row_parts(run: Callable[[int, int], None], rows: int, elements: int) -> None:
    """Calls `run(first_row, end_row)` over `rows` rows split into up to torch's thread count of parts, each
    with at least ~256K of the `elements` (smaller parts cost more in thread hand-off than they save)."""
    parts = max(1, min(torch.get_num_threads(), rows, elements >> 18))
    if parts == 1:
        run(0, rows)
        return
    bounds = [rows * i // parts for i in range(parts + 1)]
    list(_pool(parts).map(lambda i: run(bounds[i], bounds[i + 1]), range(parts)))


@functools.lru_cache(maxsize=None)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ttl-c-kernel")


def _build(source: Path, flags: list[str], path: Path) -> None:
    """Compiles into a temporary file beside `path`, then renames: a concurrent or interrupted build
    (two ranks, a killed run) never leaves a half-written library behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".so", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        command = [os.environ.get("CC", "cc"), *flags, str(source), "-o", str(tmp_path), "-lm"]
        subprocess.run(command, check=True, capture_output=True)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "torchtune_lite" / "kernels"
