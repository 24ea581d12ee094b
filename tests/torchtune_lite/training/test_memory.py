import psutil
import torch

from torchtune_lite.training.memory import format_memory_stats, get_memory_stats, reset_peak_memory_stats

CPU = torch.device("cpu")
GIB = 1024**3


def test_cpu_stats_are_the_process_rss_in_gib():
    stats = get_memory_stats(CPU)
    assert set(stats) == {"rss_peak", "rss_current"}
    rss_gib = psutil.Process().memory_info().rss / GIB
    assert abs(stats["rss_current"] - rss_gib) < 0.05  # psutil read independently, moments apart
    # a KiB/bytes mix-up would be off by 1024x; the peak is at least the current resident set
    assert stats["rss_current"] * 0.95 <= stats["rss_peak"] < stats["rss_current"] * 20


def test_peak_moves_past_the_old_peak():
    stats = get_memory_stats(CPU)
    # 512 MiB past the gap: after many tests the heap holds freed pages that are resident already and a
    # new block may reuse them, so a small margin can stay under the old peak.
    extra = int((stats["rss_peak"] - stats["rss_current"]) * GIB) + 512 * 1024**2
    block = torch.ones(extra // 4)  # written, so resident: the process must exceed its old peak
    assert get_memory_stats(CPU)["rss_peak"] > stats["rss_peak"]
    del block


def test_reset_is_a_noop_on_cpu_and_format_is_one_line():
    reset_peak_memory_stats(CPU)
    assert format_memory_stats({"rss_peak": 1.234, "rss_current": 0.5}) == "rss peak 1.23 GiB, rss current 0.50 GiB"


def test_cuda_stats_are_the_allocators_peaks_and_reset_starts_a_new_peak(monkeypatch):
    # A fake caching allocator standing in for CUDA: its peak only drops when reset.
    allocator = {"peak": 6 * GIB, "current": 2 * GIB}
    monkeypatch.setattr(torch.cuda, "memory_stats", lambda device=None: {"active_bytes.all.peak": allocator["peak"]})
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: allocator["peak"])
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: allocator["peak"] + GIB)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: allocator.update(peak=allocator["current"]))
    gpu = torch.device("cuda", 0)
    assert get_memory_stats(gpu) == {"peak_memory_active": 6.0, "peak_memory_alloc": 6.0, "peak_memory_reserved": 7.0}
    reset_peak_memory_stats(gpu)
    assert get_memory_stats(gpu)["peak_memory_alloc"] == 2.0
