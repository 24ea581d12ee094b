"""Batching: right-padding for ordinary samples, block-diagonal masks for packed ones."""

from __future__ import annotations

import torch

CROSS_ENTROPY_IGNORE_IDX = -100


def padded_collate_sft(
    batch: list[dict], padding_idx: int = 0, ignore_idx: int = CROSS_ENTROPY_IGNORE_IDX, pad_to_multiple_of: int = 1
) -> dict[str, torch.Tensor]:
    """`[{"tokens": [...], "labels": [...]}]` -> `tokens`, `labels`: LongTensor[b, s], right-padded to the
    longest sample (rounded up to `pad_to_multiple_of`, which some kernels run faster on)."""
    if not batch:
        raise ValueError("padded_collate_sft got an empty batch: check the data set is not empty")
    for i, sample in enumerate(batch):
        if len(sample["tokens"]) != len(sample["labels"]):
            raise ValueError(
                f"sample {i} of the batch has {len(sample['tokens'])} tokens but {len(sample['labels'])} labels: "
                "a data set must give one label per token"
            )
    longest = max(len(sample["tokens"]) for sample in batch)
    longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    tokens = torch.full((len(batch), longest), padding_idx, dtype=torch.long)
    labels = torch.full((len(batch), longest), ignore_idx, dtype=torch.long)
    for i, sample in enumerate(batch):
        n = len(sample["tokens"])
        tokens[i, :n] = torch.tensor(sample["tokens"])
        labels[i, :n] = torch.tensor(sample["labels"])
    return {"tokens": tokens, "labels": labels}


def block_causal_mask(seq_lens: list[int]) -> torch.Tensor:
    """bool [s, s], True where a token may attend: causal within each packed sample, never across."""
    doc = torch.repeat_interleave(torch.arange(len(seq_lens)), torch.tensor(seq_lens))
    causal = torch.ones(len(doc), len(doc), dtype=torch.bool).tril()
    return causal & (doc[:, None] == doc[None, :])


def padded_collate_packed(batch: list[dict]) -> dict[str, torch.Tensor]:
    """Packed rows (all `max_seq_len` long) -> tokens, labels, input_pos [b, s] and mask [b, s, s]."""
    return {
        "tokens": torch.stack([torch.as_tensor(s["tokens"]) for s in batch]),
        "labels": torch.stack([torch.as_tensor(s["labels"]) for s in batch]),
        "input_pos": torch.stack([torch.as_tensor(s["input_pos"]) for s in batch]),
        "mask": torch.stack([block_causal_mask(s["seq_lens"]) for s in batch]),
    }
