"""Bad training data: one `error:` line naming the file (and the line, or the row and the columns found),
exit 1. Samples too long lose the start of their prompt (the answer is kept) or, when the answer alone is too
long, are dropped, each kind counted in one warning, and the loss stays finite."""

from __future__ import annotations

import json
import math
import warnings

import pytest

from tests.reliability.conftest import read_losses, run_lora, saved_checkpoints

GOOD = {"instruction": "Say hi.", "output": "Hi there."}


@pytest.mark.parametrize(
    "name, content, message",
    [
        (None, None, "does not exist"),
        ("data.json", '[\n{"instruction": "a", "output": "b"},\n{"instruction": oops}\n]', "malformed JSON at line 3"),
        ("data.jsonl", '{"instruction": "a", "output": "b"}\n{oops\n', "malformed JSON Lines at line 2"),
        ("data.json", json.dumps([{"instruction": "a", "response": "b"}]),
         "row 1: column 'output': the row has no 'output' (found: ['instruction', 'response'])"),
        ("data.json", "[]", "holds no rows: the data set is empty"),
    ],
    ids=["missing", "json", "jsonl", "columns", "empty"],
)
def test_bad_data_file_is_one_line(name, content, message, hf_checkpoint, tmp_path):
    data = tmp_path / (name or "nowhere.json")
    if content is not None:
        data.write_text(content)
    out = tmp_path / "out"
    result = run_lora(hf_checkpoint, out, f"dataset.data_files={data}")
    assert result.returncode == 1, result.stderr
    assert len(result.error_lines) == 1, result.stderr
    line = result.error_lines[0]
    assert line.startswith("error: ") and str(data) in line and message in line, line
    assert saved_checkpoints(out) == []


def test_long_samples_keep_their_answer_are_counted_once_and_the_loss_stays_finite(hf_checkpoint, tmp_path):
    long_answer = {"instruction": "Tell a story.", "output": "and then " * 80}  # the answer alone is too long: dropped
    long_prompt = {"instruction": "Read this. " * 80, "output": "Done."}  # the prompt's start goes, the answer stays
    data = tmp_path / "data.json"
    data.write_text(json.dumps([GOOD] * 6 + [long_answer] * 3 + [long_prompt] * 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_lora(hf_checkpoint, tmp_path / "out", f"dataset.data_files={data}", max_steps_per_epoch=2)
    assert result.returncode == 0, result.stderr
    messages = [str(w.message) for w in caught if str(data) in str(w.message)]
    assert messages == [
        f"{data}: 2 of 11 samples were longer than max_seq_len=64 and were truncated (oldest turns first, then the "
        "prompt's start; answers kept whole); dropped 3 of 11 whose answer alone is longer than max_seq_len=64",
    ]
    assert "Data: 8 samples of 11 rows" in result.stdout
    losses = read_losses(tmp_path / "out")
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
