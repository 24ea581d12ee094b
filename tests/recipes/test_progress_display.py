"""Progress of a run's long phases: bars that reach 100% on a terminal, one line per phase in a log."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
import threading

from tests.recipes.conftest import tiny_overrides, tune_command, tune_env
from tests.reliability.conftest import tune
from torchtune_lite import progress_bars

PHASES_FIRST_RUN = ("Loading and quantizing weights", "Writing the NF4 cache", "Training", "Saving epoch_0")


def _run_on_a_terminal(args: list[str]) -> tuple[int, str, str]:
    """`tune ARGS` with stderr on a pseudo-terminal (as in an interactive shell) and stdout on a pipe."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # 160 columns, as a real window has
    env = {k: v for k, v in tune_env().items() if k != "TUNE_PROGRESS"}
    proc = subprocess.Popen(tune_command(*args), stdout=subprocess.PIPE, stderr=terminal, text=True, env=env)
    os.close(terminal)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(controller, 65536)
            except OSError:  # the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    stdout, _ = proc.communicate(timeout=300)
    reader.join(timeout=30)
    os.close(controller)
    return proc.returncode, stdout, b"".join(chunks).decode(errors="replace")


def test_bars_reach_100_percent_on_a_terminal_and_stay_off_stdout(hf_checkpoint, tmp_path):
    args = ["run", "lora_finetune_single_device", "--config", "tiny/qlora",
            *tiny_overrides(hf_checkpoint, tmp_path / "out", max_steps_per_epoch=2, max_val_batches=1,
                            nf4_cache_dir=tmp_path / "cache", log_every_n_steps=1),
            "metric_logger._component_=torchtune_lite.training.StdoutLogger"]
    code, stdout, terminal = _run_on_a_terminal(args)
    assert code == 0, terminal
    for phase in PHASES_FIRST_RUN:
        assert re.search(rf"{re.escape(phase)}: 100%\|", terminal), f"no finished bar for {phase!r}:\n{terminal[-3000:]}"
    assert re.search(r"Training: 100%\|[^\n]*\| 2/2 \[[^\n]*epoch_0 step 2 loss \d+\.\d+\]", terminal)  # with the last step's loss
    assert "%|" not in stdout and "\r" not in stdout  # bars go to the terminal, never into stdout
    assert re.search(r"^Step 1 \| loss:", stdout, re.M) and re.search(r"^Step 2 \| loss:", stdout, re.M)


def test_without_a_terminal_each_phase_is_one_line(hf_checkpoint, tmp_path, monkeypatch):
    # A phase longer than the interim-line interval (a loaded machine) would add "... left" lines; that is not
    # what this test is about, so no phase here gets one.
    monkeypatch.setattr(progress_bars, "PLAIN_INTERVAL_SECONDS", float("inf"))
    overrides = tiny_overrides(hf_checkpoint, tmp_path / "out", max_steps_per_epoch=2, max_val_batches=1,
                               nf4_cache_dir=tmp_path / "cache")
    first = tune("run", "lora_finetune_single_device", "--config", "tiny/qlora", *overrides)
    second = tune("run", "lora_finetune_single_device", "--config", "tiny/qlora", *overrides, "overwrite_output_dir=True")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    for result, phases in ((first, PHASES_FIRST_RUN), (second, ("Loading the NF4 cache", "Training", "Saving epoch_0"))):
        assert "\r" not in result.stderr and "%|" not in result.stderr
        for phase in phases:
            lines = [line for line in result.stderr.splitlines() if line.startswith(f"{phase}: ")]
            assert len(lines) == 1 and " in " in lines[0] and "stopped early" not in lines[0], (phase, result.stderr)
        assert re.search(r"^Training: 2 steps in \d+\.\d s \(epoch_0 step 2 loss \d+\.\d+\)$", result.stderr, re.M)
