"""Fitting a tokenized sample into the tokenizer's max_seq_len (shared by every tokenizer and data set)."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from torchtune_lite.data.messages import Message


def truncate_sample(tokens: list[int], mask: list[bool], max_seq_len: Optional[int], eos_id: int) -> tuple[list[int], list[bool]]:
    """Cuts a sample's end to `max_seq_len` (plain text, where there is no answer to keep). A sample that
    ended in EOS still does, so it stays a well-formed sequence (and packed samples stay visibly
    separated), but that EOS is masked: the model must not learn to stop where the text was merely cut."""
    if max_seq_len is None or len(tokens) <= max_seq_len:
        return tokens, mask
    ended_with_eos = tokens[-1] == eos_id
    tokens, mask = tokens[:max_seq_len], mask[:max_seq_len]
    if ended_with_eos:
        tokens[-1], mask[-1] = eos_id, True
    return tokens, mask


def fit_keeping_answer(
    messages: Sequence[Message], tokenizer, max_seq_len: int
) -> Optional[tuple[list[int], list[bool]]]:
    """Tokens and mask of `messages` in at most `max_seq_len` tokens, keeping the last answer whole.

    First the oldest exchanges go (a leading system message stays), then the start of the prompt (after
    BOS). None when the last answer alone is longer than `max_seq_len` (the caller drops the sample).
    """
    messages = list(messages)
    tokens, mask = tokenizer.tokenize_messages(messages, truncate=False)
    while len(tokens) > max_seq_len and _drop_oldest_exchange(messages):
        tokens, mask = tokenizer.tokenize_messages(messages, truncate=False)
    if len(tokens) <= max_seq_len:
        return tokens, mask
    answer_start = _last_answer_start(messages, tokenizer)
    if answer_start is None:  # nothing trains (a chat with no answer): the end is all there is to cut
        return truncate_sample(tokens, mask, max_seq_len, tokenizer.eos_id)
    answer = len(tokens) - answer_start
    if answer > max_seq_len:
        return None
    keep_bos = tokens[0] == getattr(tokenizer, "bos_id", None) and answer < max_seq_len
    keep_prompt = max_seq_len - answer - keep_bos
    head = slice(0, 1 if keep_bos else 0)
    prompt = slice(answer_start - keep_prompt, answer_start)
    return (tokens[head] + tokens[prompt] + tokens[answer_start:],
            mask[head] + mask[prompt] + mask[answer_start:])


def _drop_oldest_exchange(messages: list[Message]) -> bool:
    """Removes the oldest turns up to and including the first answer, if another answer stays after them."""
    first = next((i for i, m in enumerate(messages) if m.role != "system"), None)
    answers = [i for i, m in enumerate(messages) if m.role == "assistant"]
    if first is None or len(answers) < 2:
        return False
    del messages[first : answers[0] + 1]
    return True


def _last_answer_start(messages: Sequence[Message], tokenizer) -> Optional[int]:
    """Where the last assistant turn's tokens begin: tokenized once more with only that turn unmasked."""
    last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=None)
    if last is None:
        return None
    probe = [dataclasses.replace(m, masked=i != last) for i, m in enumerate(messages)]
    _, mask = tokenizer.tokenize_messages(probe, truncate=False)
    return next((i for i, masked in enumerate(mask) if not masked), None)
