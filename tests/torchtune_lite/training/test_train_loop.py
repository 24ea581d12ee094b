"""shift_labels and Progress."""

from __future__ import annotations

import io

import torch

from torchtune_lite.training.train_loop import IGNORE_INDEX, Progress, shift_labels


def test_shift_labels():
    labels = torch.tensor([[1, 2, 3, 4], [-100, -100, 7, 8]])
    assert shift_labels(labels).tolist() == [[2, 3, 4, -100], [-100, 7, 8, -100]]
    assert IGNORE_INDEX == -100


def test_shift_labels_matches_next_token_targets():
    tokens = torch.randint(0, 50, (3, 9))
    shifted = shift_labels(tokens.clone())
    assert torch.equal(shifted[:, :-1], tokens[:, 1:])
    assert (shifted[:, -1] == -100).all() and shifted.dtype == tokens.dtype


def test_progress_round_trip():
    progress = Progress(epoch=2, step_in_epoch=7, global_step=31)
    buffer = io.BytesIO()
    torch.save(progress.state_dict(), buffer)
    buffer.seek(0)
    restored = Progress()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored == progress
    restored.load_state_dict({"epoch": torch.tensor(1), "step_in_epoch": 0, "global_step": 5})
    assert restored == Progress(1, 0, 5) and isinstance(restored.epoch, int)
