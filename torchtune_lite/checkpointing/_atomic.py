"""Crash-safe writes: a file is either absent or complete, and so is a checkpoint folder.

Every file goes to a temporary name in its destination folder, is flushed and fsynced, then
`os.replace`d into place (atomic on POSIX), and the folder is fsynced so the rename survives a power
cut. A checkpoint folder is filled under a hidden temporary name and renamed to `epoch_N`/`step_N`
only once every file is in it, so a reader never sees half a checkpoint. A process killed half way
leaves only hidden `.name.tmp-*` / `.name.old-*` entries, which `clean_stale_staging` tidies at the
start of the next run.
"""

from __future__ import annotations

import contextlib
import errno as errno_codes
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterator, Optional

from torchtune_lite.checkpointing._errors import CheckpointWriteError


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
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        os_error = _os_error_behind(err)
        if os_error is None:
            raise
        raise _write_error(
            f"could not write checkpoint file {path}: {os_error.strerror or os_error}; free disk space or fix "
            "permissions in the output folder and save again", os_error.errno
        ) from err
    fsync_dir(path.parent)


def _write_error(message: str, code: Optional[int]) -> CheckpointWriteError:
    # Built from the message alone so it prints as one plain line (OSError(errno, text) adds "[Errno N]").
    err = CheckpointWriteError(message)
    err.errno = code
    return err


_RUST_IO_ERROR = re.compile(r"\(os error (\d+)\)")


def _os_error_behind(err: BaseException) -> Optional[OSError]:
    """The operating-system error that made a write fail, if that is what happened.

    Writers report a full disk in their own ways: Python raises `OSError`; `torch.save` into a Python
    file raises a RuntimeError whose context is the `OSError`; Rust writers (safetensors) put
    "(os error 28)" in the message."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError):
            return err
        match = _RUST_IO_ERROR.search(str(err))
        if match:
            code = int(match.group(1))
            return OSError(code, os.strerror(code) if code in errno_codes.errorcode else str(err))
        err = err.__cause__ or err.__context__
    return None


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
    except CheckpointWriteError as err:
        shutil.rmtree(stage, ignore_errors=True)
        # Name the file by where it was going (`epoch_0/...`), not by the staging folder just deleted.
        raise _write_error(str(err).replace(str(stage), str(final)), err.errno) from err
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


_STAGING_ENTRY = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-[0-9a-f]{8}$")


def clean_stale_staging(folder: Path) -> list[str]:
    """Tidies what a killed save left in `folder`.

    `.name.tmp-*` entries are half-written and are deleted. `.name.old-*` is a complete earlier copy of
    `name` moved aside by `staged_dir` just before the new copy was renamed in: if the process died
    between the two renames `name` is missing, and the old copy is put back; otherwise it is deleted.
    Returns the names removed or restored. Call it only when no other process is saving into `folder`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    tidied = []
    for entry in sorted(folder.iterdir()):
        match = _STAGING_ENTRY.match(entry.name)
        if match is None:
            continue
        final = folder / match["name"]
        if match["kind"] == "old" and not final.exists():
            os.replace(entry, final)
        elif entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        tidied.append(entry.name)
    if tidied:
        fsync_dir(folder)
    return tidied
