"""The run's output directory: refuse to clobber a previous run, tidy what a killed save left, and find
the checkpoint to resume."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from torchtune_lite.training.checkpointing._atomic import clean_stale_staging

RECIPE_STATE_FILE = "recipe_state.pt"
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


def prepare_output_dir(output_dir: Path, *, resume: bool, overwrite: bool) -> list[str]:
    """Create `output_dir`; refuse one that already holds checkpoints unless resuming or told to overwrite.

    Hidden staging folders left by a save that was killed half way are removed (or, for a checkpoint
    moved aside just before its replacement was renamed in, put back); returns their names."""
    output_dir = Path(output_dir)
    previous = [p for p in output_dir.iterdir() if _CHECKPOINT_DIR.match(p.name)] if output_dir.is_dir() else []
    if previous and not (resume or overwrite):
        raise OutputDirExistsError(
            f"output_dir {output_dir} already holds a run ({previous[0].name}, ...): pass "
            "resume_from_checkpoint=True to continue it, overwrite_output_dir=True to replace it, "
            "or choose another output_dir"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    return clean_stale_staging(output_dir)
