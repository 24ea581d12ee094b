"""The run's output directory: refuse to clobber a previous run, tidy what a killed save left, and find
the checkpoint to resume."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Optional

from torchtune_lite.checkpointing import RECIPE_STATE_FILE, clean_stale_staging
_CHECKPOINT_DIR = re.compile(r"^(epoch|step)_(\d+)$")


class OutputDirExistsError(FileExistsError):
    pass


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """Complete checkpoints (those whose recipe state was written, which happens last), oldest first."""
    if not output_dir.is_dir():
        return []
    found = []
    for path in output_dir.iterdir():
        match = _CHECKPOINT_DIR.match(path.name)
        if match and (path / RECIPE_STATE_FILE).is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.stat().st_mtime_ns)


def find_latest_checkpoint(output_dir: Path) -> Optional[Path]:
    dirs = checkpoint_dirs(Path(output_dir))
    return dirs[-1] if dirs else None


def check_output_dir(output_dir: Path, *, resume: bool, overwrite: bool, key: str = "output_dir") -> None:
    """Refuses (without touching anything) a folder that already holds a run, unless resuming or told to
    overwrite, and one that cannot be created or written."""
    output_dir = Path(output_dir).expanduser()
    previous = sorted(p.name for p in output_dir.iterdir() if _CHECKPOINT_DIR.match(p.name)) if output_dir.is_dir() else []
    if previous and not (resume or overwrite):
        raise OutputDirExistsError(
            f"{key} {output_dir} already holds a run ({previous[0]}, ...): pass "
            "resume_from_checkpoint=True to continue it, overwrite_output_dir=True to replace it, "
            f"or choose another {key}"
        )
    existing = next(p for p in (output_dir, *output_dir.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise _not_writable(output_dir, key, f"{existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _not_writable(output_dir, key, f"{existing} is not writable")


def _not_writable(output_dir: Path, key: str, why: str) -> PermissionError:
    return PermissionError(f"{key} {output_dir} cannot be written ({why}): choose a writable {key}")


def prepare_output_dir(
    output_dir: Path, *, resume: bool, overwrite: bool, log_dir: Optional[Path] = None
) -> list[str]:
    """Create `output_dir`; refuse one that already holds checkpoints unless resuming or told to overwrite.

    Overwriting (without resuming) starts fresh: the previous run's `epoch_N`/`step_N` folders and its
    `log_dir` (when that lies inside `output_dir`) are removed first, so its metrics are not appended to
    and no stale checkpoint is left to resume from. Hidden staging folders left by a save that was killed
    half way are removed (or, for a checkpoint moved aside just before its replacement was renamed in,
    put back); returns their names."""
    output_dir = Path(output_dir)
    check_output_dir(output_dir, resume=resume, overwrite=overwrite)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _not_writable(output_dir, "output_dir", err.strerror or str(err)) from None
    tidied = clean_stale_staging(output_dir)
    if overwrite and not resume:
        _remove_previous_run(output_dir, log_dir)
    return tidied


def _remove_previous_run(output_dir: Path, log_dir: Optional[Path]) -> None:
    for path in output_dir.iterdir():
        if _CHECKPOINT_DIR.match(path.name) and path.is_dir():
            shutil.rmtree(path)
    if log_dir is not None:
        log_dir = Path(log_dir).resolve()
        # Only a log folder of this run's own: never one shared with other runs outside output_dir.
        if log_dir.is_dir() and log_dir != output_dir.resolve() and output_dir.resolve() in log_dir.parents:
            shutil.rmtree(log_dir)
