"""Peak-memory statistics: CUDA allocator figures on GPU, the process's resident set on CPU."""

import resource
import sys

import psutil
import torch

_GIB = 1024**3


def peak_rss_bytes() -> int:
    """This process's peak resident set. On Linux it is read from VmHWM: ru_maxrss also counts the parent's
    peak carried across the fork/vfork and exec that started this process (a rank launched by `tune`, a
    run started from a notebook or a test runner), which VmHWM does not."""
    try:
        with open("/proc/self/status") as status:
            return 1024 * int(next(line for line in status if line.startswith("VmHWM")).split()[1])
    except (OSError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, others KiB


def get_memory_stats(device: torch.device) -> dict[str, float]:
    """Memory figures in GiB for the metric logger.

    CUDA: `peak_memory_active`, `peak_memory_alloc`, `peak_memory_reserved` (the caching allocator's peaks
    since the last `reset_peak_memory_stats`). CPU: `rss_peak` (the process's high-water resident set since
    it started; the kernel cannot reset it) and `rss_current`.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return {
            "peak_memory_active": torch.cuda.memory_stats(device).get("active_bytes.all.peak", 0) / _GIB,
            "peak_memory_alloc": torch.cuda.max_memory_allocated(device) / _GIB,
            "peak_memory_reserved": torch.cuda.max_memory_reserved(device) / _GIB,
        }
    return {"rss_peak": peak_rss_bytes() / _GIB, "rss_current": psutil.Process().memory_info().rss / _GIB}


def reset_peak_memory_stats(device: torch.device) -> None:
    """Starts a new CUDA peak (e.g. after model setup); a no-op on CPU, whose peak RSS cannot be reset."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def format_memory_stats(stats: dict[str, float]) -> str:
    """One line, e.g. `rss peak 1.23 GiB, rss current 1.01 GiB`."""
    return ", ".join(f"{name.replace('_', ' ')} {value:.2f} GiB" for name, value in stats.items())
