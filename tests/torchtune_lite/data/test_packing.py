"""PackedDataset and padded_collate_packed: positions restart, masks are block-causal, boundaries are ignored."""

from __future__ import annotations

import torch

from torchtune_lite.data import CROSS_ENTROPY_IGNORE_IDX as IGN
from torchtune_lite.data import PackedDataset, padded_collate_packed

SAMPLES = [
    {"tokens": [1, 11, 12, 2], "labels": [1, 11, 12, 2]},
    {"tokens": [1, 21, 22], "labels": [IGN, IGN, 22]},
    {"tokens": [1, 31, 32, 33, 34, 2], "labels": [1, 31, 32, 33, 34, 2]},
    {"tokens": [1, 41], "labels": [1, 41]},
    {"tokens": list(range(100, 112)), "labels": list(range(100, 112))},  # longer than a row: cut
]


def _reference_mask(seq_lens: list[int]) -> torch.Tensor:
    n = sum(seq_lens)
    mask = torch.zeros(n, n, dtype=torch.bool)
    start = 0
    for length in seq_lens:
        for i in range(start, start + length):
            mask[i, start : i + 1] = True
        start += length
    return mask


def test_rows_are_filled_greedily():
    packed = PackedDataset(SAMPLES, max_seq_len=8, padding_idx=0)
    assert len(packed) == 3
    r0, r1, r2 = packed[0], packed[1], packed[2]
    assert r0["tokens"] == [1, 11, 12, 2, 1, 21, 22, 0]
    assert r0["seq_lens"] == [4, 3, 1]  # the padding counts as its own block
    assert r0["input_pos"] == [0, 1, 2, 3, 0, 1, 2, 0]
    assert r1["tokens"] == [1, 31, 32, 33, 34, 2, 1, 41]
    assert r1["seq_lens"] == [6, 2]
    assert r1["input_pos"] == [0, 1, 2, 3, 4, 5, 0, 1]
    assert r2["tokens"] == list(range(100, 108)) and r2["seq_lens"] == [8]
    for row in (r0, r1, r2):
        assert len(row["tokens"]) == len(row["labels"]) == len(row["input_pos"]) == 8
        assert sum(row["seq_lens"]) == 8


def test_boundary_labels_and_padding_are_ignored():
    packed = PackedDataset(SAMPLES, max_seq_len=8, padding_idx=0)
    assert packed[0]["labels"] == [IGN, 11, 12, 2, IGN, IGN, 22, IGN]
    assert packed[1]["labels"] == [IGN, 31, 32, 33, 34, 2, IGN, 41]
    # after the loop's shift, the last token of a sample never targets the next sample's first token
    from torchtune_lite.training.loss import shift_labels

    shifted = shift_labels(torch.tensor([packed[1]["labels"]]))[0].tolist()
    assert shifted[5] == IGN  # position of the EOS of sample 3


def test_collate_packed_mask_matches_reference():
    packed = PackedDataset(SAMPLES, max_seq_len=8, padding_idx=0)
    batch = padded_collate_packed([packed[0], packed[1]])
    assert batch["tokens"].shape == batch["labels"].shape == batch["input_pos"].shape == (2, 8)
    assert batch["mask"].shape == (2, 8, 8) and batch["mask"].dtype == torch.bool
    assert torch.equal(batch["mask"][0], _reference_mask([4, 3, 1]))
    assert torch.equal(batch["mask"][1], _reference_mask([6, 2]))
    assert batch["input_pos"][1].tolist() == [0, 1, 2, 3, 4, 5, 0, 1]


def test_exact_fit_has_no_padding_block():
    packed = PackedDataset([{"tokens": [1, 2, 3, 4], "labels": [1, 2, 3, 4]}] * 2, max_seq_len=4)
    assert len(packed) == 2 and packed[0]["seq_lens"] == [4]


def test_packed_and_unpacked_batches_give_the_same_loss():
    """The same samples, packed into one row or padded into a batch: equal summed loss and token count (fp32)."""
    from torchtune_lite.data import padded_collate_sft
    from torchtune_lite.models.llama2 import llama2
    from torchtune_lite.training.evaluation import forward_loss
    from torchtune_lite.training.loss import ChunkedCrossEntropyLoss

    torch.manual_seed(0)
    model = llama2(vocab_size=128, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=32, intermediate_dim=64,
                   max_seq_len=64).to(torch.float32)
    gen = torch.Generator().manual_seed(1)
    samples = []
    for n in (9, 5, 12, 7):
        tokens = torch.randint(3, 128, (n,), generator=gen).tolist()
        labels = [IGN] * (n // 3) + tokens[n // 3:]  # a masked prompt, then the answer
        samples.append({"tokens": tokens, "labels": labels})
    packed = PackedDataset(samples, max_seq_len=40)
    assert len(packed) == 1
    loss_fn, cpu = ChunkedCrossEntropyLoss(), torch.device("cpu")
    with torch.no_grad():
        packed_loss, packed_n = forward_loss(model, loss_fn, padded_collate_packed([packed[0]]), cpu)
        plain_loss, plain_n = forward_loss(model, loss_fn, padded_collate_sft(samples), cpu)
    assert int(packed_n) == int(plain_n) == sum(len(s["tokens"]) - len(s["tokens"]) // 3 for s in samples)
    torch.testing.assert_close(packed_loss / packed_n, plain_loss / plain_n, atol=1e-5, rtol=0)
