"""Where a CPU run's peak resident set is reached: the peak (VmHWM) and the current resident set after each
phase of one real recipe run (setup, every training step with its batch length, validation, each save, the
generation after training).

    python benchmarks/memory_phases.py lora_finetune_single_device --config tiny/qlora [key=value ...]

Runs the recipe in this process, as `tune run` does, with the loop's and recipe's phase methods wrapped to
read /proc/self/status around them (a measurement aid: nothing in the run changes). Prints one line per
phase that raised the peak, then the peak reached in each kind of phase. Linux only.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections import defaultdict

from torchtune_lite.training import finetune, train_loop
from torchtune_lite.training.loss import IGNORE_INDEX, shift_labels

_MIB = 1024**2


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def malloc_free_bytes() -> int:
    """Bytes glibc holds in its heaps but has not handed out (freed, kept resident or not), over all arenas."""
    try:
        info = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):  # not glibc, or glibc < 2.33
        return 0
    info.restype = _MallInfo2
    return info().fordblks


def status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        return 1024 * int(next(line for line in status if line.startswith(field)).split()[1])


class PhaseLog:
    """Peak and current resident bytes after each wrapped call, and by how much the call raised the peak."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, int, int, int, int]] = []  # phase, peak before, peak after, resident after, malloc free
        self.lengths_seen: set[int] = set()

    def wrap(self, owner: object, method: str, phase) -> None:
        original = getattr(owner, method)

        @functools.wraps(original)
        def measured(*args, **kwargs):
            before = status_bytes("VmHWM")
            result = original(*args, **kwargs)
            self.rows.append((phase(*args, **kwargs), before, status_bytes("VmHWM"), status_bytes("VmRSS"), malloc_free_bytes()))
            return result

        setattr(owner, method, measured)

    def step_phase(self, loop, batch) -> str:
        length = int(batch["tokens"].shape[-1])
        new = length not in self.lengths_seen
        self.lengths_seen.add(length)
        # the tokens the loss scores: the row count of the output projection's matmuls in the fused loss
        scored = int((shift_labels(batch["labels"]) != IGNORE_INDEX).sum()) if "labels" in batch else 0
        return f"step, batch length {length}{' (new)' if new else ''}, {scored} scored"

    def report(self) -> None:
        print(f"{'phase':<48} {'peak MiB':>9} {'raised by':>9} {'rss MiB':>8} {'malloc free MiB':>16}")
        by_kind: dict[str, int] = defaultdict(int)
        raised: dict[str, int] = defaultdict(int)
        for phase, before, after, rss, free in self.rows:
            kind = phase.split(",")[0]
            by_kind[kind] = max(by_kind[kind], after)
            raised[kind] += after - before
            if after > before:
                print(f"{phase:<48} {after / _MIB:>9.1f} {(after - before) / _MIB:>+9.1f} {rss / _MIB:>8.1f} {free / _MIB:>16.1f}")
        print(f"\n{'kind':<14} {'peak after MiB':>14} {'total raise MiB':>16}   ({len(self.lengths_seen)} batch lengths)")
        for kind in by_kind:
            print(f"{kind:<14} {by_kind[kind] / _MIB:>14.1f} {raised[kind] / _MIB:>16.1f}")


def main() -> None:
    log = PhaseLog()
    log.wrap(train_loop.TrainLoop, "_forward_backward", log.step_phase)
    log.wrap(train_loop.TrainLoop, "_optimizer_step", lambda *a, **k: "optimizer step")
    log.wrap(train_loop.TrainLoop, "log_validation", lambda *a, **k: "validation")
    run_recipe = finetune.run_recipe

    def run_measured_recipe(recipe) -> None:
        # The recipe's own phases: its methods on the instance, and the generation function its module calls.
        log.wrap(recipe, "setup", lambda *a, **k: "setup")
        log.wrap(recipe, "save_checkpoint", lambda *a, **k: "save")
        module = sys.modules[type(recipe).__module__]
        if hasattr(module, "show_generation"):
            log.wrap(module, "show_generation", lambda *a, **k: "generation")
        run_recipe(recipe)

    finetune.run_recipe = run_measured_recipe  # recipes call it through the module
    from torchtune_lite.cli import tune

    try:
        tune.main(["run", *sys.argv[1:]])
    finally:
        log.report()


if __name__ == "__main__":
    main()
