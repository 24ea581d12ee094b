"""padded_collate_sft and block_causal_mask."""

from __future__ import annotations

import pytest
import torch

from torchtune_lite.data import CROSS_ENTROPY_IGNORE_IDX, block_causal_mask, padded_collate_sft


def test_right_pads_tokens_and_labels():
    batch = [
        {"tokens": [1, 5, 6, 2], "labels": [-100, -100, 6, 2]},
        {"tokens": [1, 7], "labels": [1, 7]},
        {"tokens": [1, 8, 9], "labels": [-100, 8, 9]},
    ]
    out = padded_collate_sft(batch, padding_idx=3)
    assert out["tokens"].dtype == out["labels"].dtype == torch.long
    assert out["tokens"].tolist() == [[1, 5, 6, 2], [1, 7, 3, 3], [1, 8, 9, 3]]
    assert out["labels"].tolist() == [[-100, -100, 6, 2], [1, 7, -100, -100], [-100, 8, 9, -100]]
    assert CROSS_ENTROPY_IGNORE_IDX == -100


def test_custom_ignore_and_multiple_of():
    out = padded_collate_sft([{"tokens": [4, 5, 6], "labels": [4, 5, 6]}], ignore_idx=-1, pad_to_multiple_of=4)
    assert out["tokens"].tolist() == [[4, 5, 6, 0]]
    assert out["labels"].tolist() == [[4, 5, 6, -1]]
    out = padded_collate_sft([{"tokens": [4, 5, 6, 7], "labels": [4, 5, 6, 7]}], pad_to_multiple_of=4)
    assert out["tokens"].shape == (1, 4)


def _reference_mask(seq_lens: list[int]) -> torch.Tensor:
    n = sum(seq_lens)
    mask = torch.zeros(n, n, dtype=torch.bool)
    start = 0
    for length in seq_lens:
        for i in range(start, start + length):
            for j in range(start, i + 1):
                mask[i, j] = True
        start += length
    return mask


@pytest.mark.parametrize("seq_lens", [[5], [2, 3, 1], [1, 1, 1, 1], [4, 4]])
def test_block_causal_mask(seq_lens):
    mask = block_causal_mask(seq_lens)
    assert mask.dtype == torch.bool
    assert torch.equal(mask, _reference_mask(seq_lens))


def test_length_mismatch_and_empty_batch():
    with pytest.raises(ValueError, match="sample 1 of the batch has 2 tokens but 3 labels"):
        padded_collate_sft([{"tokens": [1], "labels": [1]}, {"tokens": [1, 2], "labels": [1, 2, 3]}])
    with pytest.raises(ValueError, match="empty batch"):
        padded_collate_sft([])
