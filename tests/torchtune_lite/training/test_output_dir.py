"""prepare_output_dir refuses to clobber a run; find_latest_checkpoint counts only complete checkpoints."""

from __future__ import annotations

import os

import pytest

from torchtune_lite.training.output_dir import (
    RECIPE_STATE_FILE,
    OutputDirExistsError,
    checkpoint_dirs,
    find_latest_checkpoint,
    prepare_output_dir,
)


def _checkpoint(root, name, complete=True, mtime=None):
    path = root / name
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"x")
    if complete:
        (path / RECIPE_STATE_FILE).write_bytes(b"x")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_creates_missing_dir(tmp_path):
    out = tmp_path / "a" / "b"
    prepare_output_dir(out, resume=False, overwrite=False)
    assert out.is_dir()


def test_dir_without_checkpoints_is_fine(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "logs").mkdir()
    (tmp_path / "epoch_notes").mkdir()  # only epoch_N / step_N folders are checkpoints
    assert prepare_output_dir(tmp_path, resume=False, overwrite=False) == []  # nothing stale to tidy
    # what was there is left untouched, and there is no checkpoint to resume from
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_notes", "logs", "notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "hi"
    assert find_latest_checkpoint(tmp_path) is None


def test_refuses_existing_run(tmp_path):
    _checkpoint(tmp_path, "epoch_0")
    with pytest.raises(OutputDirExistsError, match="resume_from_checkpoint") as err:
        prepare_output_dir(tmp_path, resume=False, overwrite=False)
    assert isinstance(err.value, FileExistsError) and "\n" not in str(err.value)
    prepare_output_dir(tmp_path, resume=True, overwrite=False)
    prepare_output_dir(tmp_path, resume=False, overwrite=True)


def test_refuses_even_an_incomplete_run(tmp_path):
    _checkpoint(tmp_path, "step_5", complete=False)
    with pytest.raises(OutputDirExistsError):
        prepare_output_dir(tmp_path, resume=False, overwrite=False)


def test_latest_checkpoint_needs_recipe_state(tmp_path):
    assert find_latest_checkpoint(tmp_path / "missing") is None
    assert find_latest_checkpoint(tmp_path) is None
    _checkpoint(tmp_path, "epoch_0", mtime=1_000)
    _checkpoint(tmp_path, "step_10", mtime=2_000)
    _checkpoint(tmp_path, "step_20", complete=False, mtime=3_000)  # interrupted while saving
    _checkpoint(tmp_path, "best", mtime=4_000)  # not a checkpoint name
    (tmp_path / "step_30").write_text("a file, not a dir")
    assert find_latest_checkpoint(tmp_path) == tmp_path / "step_10"
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["epoch_0", "step_10"]


def test_prepare_tidies_what_a_killed_save_left(tmp_path):
    _checkpoint(tmp_path, "step_2")
    _checkpoint(tmp_path, ".step_4.tmp-0123abcd", complete=False)  # killed while filling it
    _checkpoint(tmp_path, ".epoch_0.old-89abcdef")  # killed between moving epoch_0 aside and renaming the new one in
    _checkpoint(tmp_path, "step_6")
    _checkpoint(tmp_path, ".step_6.old-fedcba98")  # killed after the new step_6 was in place
    (tmp_path / ".config.json.tmp-00112233").write_text("half")
    (tmp_path / ".hidden-notes").write_text("not ours")
    tidied = prepare_output_dir(tmp_path, resume=True, overwrite=False)
    assert sorted(tidied) == [".config.json.tmp-00112233", ".epoch_0.old-89abcdef", ".step_4.tmp-0123abcd", ".step_6.old-fedcba98"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden-notes", "epoch_0", "step_2", "step_6"]
    assert (tmp_path / "epoch_0" / RECIPE_STATE_FILE).is_file()  # the moved-aside copy is back


def test_overwrite_starts_fresh_removing_checkpoints_and_the_runs_own_logs(tmp_path):
    out, shared_logs = tmp_path / "run", tmp_path / "shared_logs"
    for name in ("epoch_0", "step_4", "epoch_1"):
        _checkpoint(out, name)
    (out / "logs").mkdir()
    (out / "logs" / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    (out / "notes.txt").write_text("the user's")
    shared_logs.mkdir()
    (shared_logs / "metrics.jsonl").write_text("other runs\n")
    prepare_output_dir(out, resume=False, overwrite=True, log_dir=out / "logs")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    prepare_output_dir(out, resume=False, overwrite=True, log_dir=shared_logs)  # outside output_dir: kept
    assert (shared_logs / "metrics.jsonl").read_text() == "other runs\n"


def test_resuming_wins_over_overwrite_and_keeps_everything(tmp_path):
    _checkpoint(tmp_path, "epoch_0")
    (tmp_path / "logs").mkdir()
    prepare_output_dir(tmp_path, resume=True, overwrite=True, log_dir=tmp_path / "logs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_0", "logs"]
