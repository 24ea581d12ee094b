"""Cutting a tokenized sample to the tokenizer's max_seq_len (shared by every tokenizer)."""

from __future__ import annotations

from typing import Optional


def truncate_sample(tokens: list[int], mask: list[bool], max_seq_len: Optional[int], eos_id: int) -> tuple[list[int], list[bool]]:
    """Cuts a sample to `max_seq_len`. A sample that ended in EOS still does, so it stays a well-formed
    sequence (and packed samples stay visibly separated), but that EOS is masked: the model must not
    learn to stop where the text was merely cut."""
    if max_seq_len is None or len(tokens) <= max_seq_len:
        return tokens, mask
    ended_with_eos = tokens[-1] == eos_id
    tokens, mask = tokens[:max_seq_len], mask[:max_seq_len]
    if ended_with_eos:
        tokens[-1], mask[-1] = eos_id, True
    return tokens, mask
