"""Progress of the long phases of a run (loading, quantizing, the NF4 cache, saving, training), on rank 0.

On a terminal each phase is a tqdm bar with an ETA. When stderr is not a terminal (a log file, CI, a
scheduler's output) a bar's carriage-return redraws would fill the log with noise, so a phase prints one
line when it ends (`Loading weights: 1.2G weights in 3.4 s`), and a long one a line every
`PLAIN_INTERVAL_SECONDS` with its ETA. `TUNE_PROGRESS=bar` or `=lines` overrides the choice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from typing import Any, Iterator, Optional

from tqdm import tqdm

PLAIN_INTERVAL_SECONDS = 60.0


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def bars_on_terminal() -> bool:
    """Whether progress shows as bars (a terminal, or TUNE_PROGRESS=bar) rather than one line per phase."""
    choice = os.environ.get("TUNE_PROGRESS", "").lower()
    if choice in ("bar", "lines"):
        return choice == "bar"
    return sys.stderr.isatty()


class LineProgress:
    """tqdm's interface (`update`, `set_description`, `close`, a context manager) printing plain lines."""

    def __init__(self, total: Optional[float], desc: str, unit: str, initial: float = 0, unit_scale: bool = False) -> None:
        self.total, self.desc, self.unit, self.unit_scale = total, desc, unit, unit_scale
        self.n = initial
        self._start = self._last_line = time.monotonic()
        self._start_n = initial
        self._closed = False
        self.postfix = ""

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last_line >= PLAIN_INTERVAL_SECONDS and self.total:
            self._last_line = now
            rate = (self.n - self._start_n) / max(now - self._start, 1e-9)
            eta = (self.total - self.n) / rate if rate > 0 else float("nan")
            self._print(f"{self._amount(self.n)}/{self._amount(self.total)}{'' if self.unit == 'B' else ' '}{self.unit} "
                        f"({self.n / self.total:.0%}), {now - self._start:.0f} s, about {eta:.0f} s left")

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        seconds = time.monotonic() - self._start
        done = self.total is not None and self.n >= self.total
        amount = f"{self._amount(self.n)}" if done else f"{self._amount(self.n)}/{self._amount(self.total)}"
        amount += self.unit if self.unit == "B" else f" {self.unit}" + ("" if self.unit.endswith("s") or self.n == 1 else "s")
        postfix = f" ({self.postfix})" if self.postfix else ""
        self._print(f"{amount} in {seconds:.1f} s{postfix}" + ("" if done else " (stopped early)"))

    def _amount(self, n: Optional[float]) -> str:
        if n is None:
            return "?"
        return tqdm.format_sizeof(n) if self.unit_scale else f"{int(n)}"

    def _print(self, text: str) -> None:
        print(f"{self.desc}: {text}", file=sys.stderr, flush=True)

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None:  # the error (or the stop) is reported on its own line: no half-phase line
            self._closed = True
        self.close()


class _Disabled(LineProgress):
    def update(self, n: float = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(
    total: Optional[float],
    *,
    desc: str = "",
    unit: str = "it",
    unit_scale: bool = False,
    initial: float = 0,
    enabled: Optional[bool] = None,
) -> Any:
    """A progress display for one phase: a tqdm bar on a terminal, plain lines otherwise, nothing when
    `enabled` is False (default: only on rank 0 of a distributed job)."""
    if enabled is None:
        enabled = _is_rank_zero()
    if not enabled:
        return _Disabled(total, desc, unit, initial)
    if not bars_on_terminal():
        return LineProgress(total, desc, unit, initial, unit_scale)
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, initial=initial, dynamic_ncols=True,
                leave=True, file=sys.stderr)


def write_above_bar(text: str) -> None:
    """Prints `text` on stdout without breaking a bar being drawn (tqdm moves the bar below it)."""
    tqdm.write(text, file=sys.stdout)


@contextlib.contextmanager
def track_writes(tensors: list, desc: str) -> Iterator[list]:
    """`tensors` (TensorToWrite-like: `nbytes` and a `produce()`), each reporting its bytes to one bar for
    the phase as it is produced for writing; the bar closes when the block (the writing) ends."""
    bar = progress_bar(sum(t.nbytes for t in tensors), desc=desc, unit="B", unit_scale=True)

    def reporting(t):
        def produce():
            value = t.produce()
            bar.update(t.nbytes)
            return value

        return dataclasses.replace(t, produce=produce)

    with bar:
        yield [reporting(t) for t in tensors]
