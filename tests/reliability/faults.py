"""`python -m tests.reliability.faults FAULT TUNE_ARGS...`: the `tune` CLI with one fault injected.

The fault comes from outside the code under test, the way it would in real life, at a chosen point so
the test is deterministic:

  signal-after-step:SIGTERM:N  once the metric logger has written step N, the process sends itself the
                               signal (a real one: the run takes the path a Ctrl-C or a scheduler's
                               SIGTERM takes)
  kill-during-save:N           SIGKILL in the N-th checkpoint save, right after its first file is written
                               (fsynced) and before anything is renamed into place
  fsize-limit-after-save:N     after N saves, no file may grow past 64 KiB (RLIMIT_FSIZE with SIGXFSZ
                               ignored), so the next save's writes fail with EFBIG as on a full disk
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time

FILE_SIZE_LIMIT = 64 * 1024


def _after_saves(n: int, action) -> None:
    """Run `action()` as the n-th checkpoint save starts."""
    from torchtune_lite.checkpointing._base import CheckpointerBase

    real_save, calls = CheckpointerBase.save_checkpoint, [0]

    def save_checkpoint(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            action()
        return real_save(self, *args, **kwargs)

    CheckpointerBase.save_checkpoint = save_checkpoint


def inject(fault: str) -> None:
    kind, _, param = fault.partition(":")
    if kind == "signal-after-step":
        name, at_step = param.split(":")
        from torchtune_lite.training.metric_logging import DiskLogger

        real_log = DiskLogger.log_dict

        def log_dict(self, payload, step):
            real_log(self, payload, step)
            if step == int(at_step):
                os.kill(os.getpid(), getattr(signal, name))
                time.sleep(0.2)  # the handler runs during the sleep, whichever thread the signal hit

        DiskLogger.log_dict = log_dict
    elif kind == "kill-during-save":
        real_fsync = os.fsync

        def fsync_then_die(fd):
            real_fsync(fd)
            os.kill(os.getpid(), signal.SIGKILL)

        _after_saves(int(param), lambda: setattr(os, "fsync", fsync_then_die))
    elif kind == "fsize-limit-after-save":

        def limit_file_size():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
            resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

        _after_saves(int(param) + 1, limit_file_size)
    else:
        raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
    inject(sys.argv[1])
    from torchtune_lite.cli.tune import main

    main(sys.argv[2:])
