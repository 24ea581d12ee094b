"""Crash-safe writes: a file is either absent or complete, and so is a checkpoint folder.

Every file goes to a temporary name in its destination folder, is flushed and fsynced, then
`os.replace`d into place (atomic on POSIX), and the folder is fsynced so the rename survives a power
cut. A checkpoint folder is filled under a hidden temporary name and renamed to `epoch_N`/`step_N`
only once every file is in it, so a reader never sees half a checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterator

from torchtune_lite.training.checkpointing._errors import CheckpointWriteError


def fsync_dir(path: Path) -> None:
    """Persist a folder's entries (renames, new files); a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the data files themselves were synced
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` to produce the file, then move it to `path` durably.

    On any failure the temporary file is removed, `path` keeps its previous content (if any), and a
    `CheckpointWriteError` naming `path` is raised.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointWriteError(
            err.errno, f"could not write checkpoint file {path}: {err.strerror or err}; free disk space "
            "or fix permissions in the output folder and save again"
        ) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write small files (JSON configs) atomically."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_copy(src: Path, dst: Path) -> None:
    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


@contextlib.contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield a hidden sibling folder to fill; on success it replaces `final`, on error it is deleted.

    An existing `final` (re-saving the same epoch) is moved aside first and removed only after the new
    folder is in place, so at every moment one complete copy exists on disk.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    stage.mkdir()
    try:
        yield stage
        fsync_dir(stage)
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(final, old)
        try:
            os.replace(stage, final)
        except BaseException:
            if old is not None:
                os.replace(old, final)
            raise
        fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
