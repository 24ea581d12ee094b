"""Optional fused C++ CPU kernels for NF4, built lazily on first use with ``torch.utils.cpp_extension``.

Why: the pure-torch kernels make several passes per chunk (abs, max, divide, convert, gather, pack),
and each pass is a separate multi-threaded op; on a small, busy CPU every op waits for its slowest
thread. One fused pass over the blocks does the same arithmetic, in the same dtype, with one parallel
region, written so the compiler vectorizes it (quantize) or with vector lookups (dequantize: with AVX-512
one 16-lane permute per 16 codes and, for bf16, the AVX512-BF16 rounding instruction, chosen at run time;
otherwise two 8-lane AVX2 permutes and rounding by hand). The build's ISA flags follow what torch
detected on this CPU.
The source is ``nf4_kernels.cpp`` beside this file (shipped as package data). The build (~30 s) happens
once and is cached by torch; if no compiler is present, the build fails, or ``TORCHTUNE_LITE_NF4_CPP=0`` is set, callers get None and use the pure-torch path.
"""

import functools
import hashlib
import logging
import os
import threading
from pathlib import Path
from types import ModuleType
from typing import Optional

from torchtune_lite.kernels import c_library

_log = logging.getLogger(__name__)

# The C++ source, a real file beside this module (pyproject ships it as package data).
_SOURCE_FILE = Path(__file__).with_name("nf4_kernels.cpp")

_lock = threading.Lock()
_state: dict[str, Optional[ModuleType]] = {}


def extension() -> Optional[ModuleType]:
    """The compiled module (``quantize_blocks``, ``dequantize_blocks``), or None when it is disabled or cannot build."""
    if os.environ.get("TORCHTUNE_LITE_NF4_CPP", "1") == "0":
        return None
    with _lock:
        if "module" not in _state:
            _state["module"] = _build()
        return _state["module"]


def is_loaded() -> bool:
    """Whether this process has the compiled module already (built or loaded from the cache)."""
    return _state.get("module") is not None


def is_built() -> bool:
    """Whether this process has the module or torch's extension cache holds a finished build of it for this
    source and CPU kind (loading that takes well under a second; building takes a minute)."""
    if is_loaded():
        return True
    if os.environ.get("TORCHTUNE_LITE_NF4_CPP", "1") == "0":
        return False
    return _cached_library().exists()


@functools.lru_cache(maxsize=None)
def _cached_library() -> Path:
    from torch.utils import cpp_extension

    name, _ = _module_name_and_flags()
    # Private, but it is the one place torch decides where load_inline builds (TORCH_EXTENSIONS_DIR, the
    # Python and CUDA versions); it creates the (empty) folder, which load_inline would create anyway.
    return Path(cpp_extension._get_build_directory(name, verbose=False)) / f"{name}.so"


@functools.lru_cache(maxsize=None)
def _module_name_and_flags() -> tuple[str, tuple[str, ...]]:
    # The name carries a hash of the source and flags, so an edited kernel or another CPU kind
    # never reuses a stale cached build.
    flags = ("-O3", *c_library.isa_flags())
    digest = hashlib.sha256((_SOURCE_FILE.read_text() + " ".join(flags)).encode()).hexdigest()[:12]
    return f"torchtune_lite_nf4_{digest}", flags


def _build() -> Optional[ModuleType]:
    try:
        from torch.utils.cpp_extension import load_inline

        name, flags = _module_name_and_flags()
        return load_inline(
            name=name,
            cpp_sources=_SOURCE_FILE.read_text(),
            functions=["quantize_blocks", "dequantize_blocks", "advise_huge_pages", "dequantize_path"],
            extra_cflags=list(flags),
            verbose=False,
        )
    except Exception as err:  # no compiler, no headers, build error: the pure-torch path is always there
        _log.warning("NF4 C++ kernels unavailable (%s); using the pure-torch NF4 kernels", str(err).splitlines()[0])
        return None
