"""Preference pairs: one prompt (a list of messages) with a chosen and a rejected answer, read from the
common shapes of preference data, checked, tokenized and batched.

Shapes a row may have (after any column map):
- `prompt`, `chosen`, `rejected` as strings (the prompt becomes one user turn);
- `chosen` and `rejected` as message lists (`[{role, content}]`), either the answers alone beside a
  `prompt` (string or message list) or the whole conversations, whose shared turns are the prompt;
- Anthropic-HH transcripts: `chosen` and `rejected` strings of `\\n\\nHuman: ...\\n\\nAssistant: ...` turns, the
  prompt being everything before the last assistant turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

import torch

from torchtune_lite.data.collate import CROSS_ENTROPY_IGNORE_IDX, padded_collate_sft
from torchtune_lite.data.columns import RowError, lookup
from torchtune_lite.data.messages import Message
from torchtune_lite.data.stats import DataStats
from torchtune_lite.data.truncation import fit_keeping_answer

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


@dataclass(frozen=True)
class PreferencePair:
    prompt: tuple[Message, ...]  # context, never trained on
    chosen: str
    rejected: str


COLUMNS = ("prompt", "chosen", "rejected")


def pair_from_row(row: dict[str, Any], columns: Optional[dict[str, str]] = None) -> PreferencePair:
    """The pair a row holds, in any of the module's shapes. `columns` maps prompt/chosen/rejected to the
    row's columns or paths (default: the same names; a row without a prompt column may still be a pair).
    Raises RowError naming the column; the data set adds the file and row."""
    columns = {c: c for c in COLUMNS} | (columns or {})
    chosen, rejected = lookup(row, columns["chosen"]), lookup(row, columns["rejected"])
    prompt = lookup(row, columns["prompt"]) if row.get(columns["prompt"].split(".")[0]) is not None else None
    if isinstance(chosen, list) and isinstance(rejected, list):
        pair = _pair_from_message_lists(chosen, rejected, prompt)
    elif isinstance(chosen, str) and isinstance(rejected, str):
        if prompt is None:
            pair = _pair_from_transcripts(chosen, rejected)
        else:
            pair = PreferencePair(_prompt_messages(prompt), chosen, rejected)
    else:
        raise RowError(
            f"'chosen' and 'rejected' must both be text or both be message lists, "
            f"got {type(chosen).__name__} and {type(rejected).__name__}"
        )
    _check(pair)
    return pair


def _pair_from_message_lists(chosen: list, rejected: list, prompt: Any) -> PreferencePair:
    chosen_msgs, rejected_msgs = _messages(chosen, "chosen"), _messages(rejected, "rejected")
    for column, msgs in (("chosen", chosen_msgs), ("rejected", rejected_msgs)):
        if not msgs or msgs[-1].role != "assistant":
            raise RowError(f"column {column!r} must end with an assistant message")
    if prompt is not None:  # the lists are the answers; the prompt comes separately
        shared = (*_prompt_messages(prompt), *chosen_msgs[:-1])
        if chosen_msgs[:-1] != rejected_msgs[:-1]:
            raise RowError("'chosen' and 'rejected' differ before their last message")
        return PreferencePair(shared, chosen_msgs[-1].content, rejected_msgs[-1].content)
    if chosen_msgs[:-1] != rejected_msgs[:-1]:
        raise RowError(
            "the conversations in 'chosen' and 'rejected' differ before their last assistant message, "
            "so they share no prompt: give a separate 'prompt' column or fix the row"
        )
    return PreferencePair(tuple(chosen_msgs[:-1]), chosen_msgs[-1].content, rejected_msgs[-1].content)


def _pair_from_transcripts(chosen: str, rejected: str) -> PreferencePair:
    chosen_prompt, chosen_answer = _split_transcript(chosen, "chosen")
    rejected_prompt, rejected_answer = _split_transcript(rejected, "rejected")
    if chosen_prompt != rejected_prompt:
        raise RowError(
            "the transcripts in 'chosen' and 'rejected' differ before their last '\\n\\nAssistant:' turn, "
            "so they share no prompt"
        )
    return PreferencePair(chosen_prompt, chosen_answer, rejected_answer)


def _split_transcript(text: str, column: str) -> tuple[tuple[Message, ...], str]:
    """'\\n\\nHuman: hi\\n\\nAssistant: hello' -> ((user 'hi',), 'hello')."""
    pieces = _HH_TURN.split(text)
    if len(pieces) < 5 or pieces[-2] != "Assistant":
        raise RowError(
            f"column {column!r} has no prompt: expected a string 'prompt' column or an Anthropic-HH "
            "transcript ('\\n\\nHuman: ...\\n\\nAssistant: ...')"
        )
    roles = {"Human": "user", "Assistant": "assistant"}
    turns = [Message(roles[role], body.strip(), masked=True) for role, body in zip(pieces[1:-2:2], pieces[2:-2:2])]
    return tuple(turns), pieces[-1].strip()


def _prompt_messages(prompt: Any) -> tuple[Message, ...]:
    if isinstance(prompt, str):
        return (Message("user", prompt, masked=True),)
    if isinstance(prompt, list):
        return tuple(_messages(prompt, "prompt"))
    raise RowError(f"column 'prompt' must be text or a message list, got {type(prompt).__name__}")


def _messages(items: list, column: str) -> list[Message]:
    messages = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "role" not in item or "content" not in item:
            raise RowError(f"{column}[{i}] is not a {{role, content}} message")
        try:
            messages.append(Message(item["role"], item["content"], masked=True))
        except ValueError as err:
            raise RowError(f"{column}[{i}]: {err}") from None
    return messages


def _check(pair: PreferencePair) -> None:
    for column, answer in (("chosen", pair.chosen), ("rejected", pair.rejected)):
        if not answer.strip():
            raise RowError(f"column {column!r} has an empty answer: drop the row or fill it")
    if pair.chosen == pair.rejected:
        raise RowError("'chosen' and 'rejected' are the same answer, so the pair teaches nothing: drop the row")


def tokenize_pair(tokenizer: Any, pair: PreferencePair, stats: DataStats) -> Optional[dict[str, list[int]]]:
    """Both sequences through the tokenizer's own formatting, labels on the answer (and its end token) only.

    A side longer than `tokenizer.max_seq_len` keeps its answer and loses prompt first (oldest turns, then
    the prompt's start); the pair is dropped (None) when an answer alone is too long. Counted in `stats`.
    """
    limit = tokenizer.max_seq_len
    sample: dict[str, list[int]] = {}
    truncated = False
    for side, answer in (("chosen", pair.chosen), ("rejected", pair.rejected)):
        messages = [*pair.prompt, Message("assistant", answer)]
        tokens, mask = tokenizer.tokenize_messages(messages, truncate=False)
        if limit is not None and len(tokens) > limit:
            fitted = fit_keeping_answer(messages, tokenizer, limit)
            if fitted is None:
                stats.dropped_too_long += 1
                return None
            (tokens, mask), truncated = fitted, True
        labels = [CROSS_ENTROPY_IGNORE_IDX if masked else token for token, masked in zip(tokens, mask)]
        sample[f"{side}_tokens"], sample[f"{side}_labels"] = tokens, labels
    stats.truncated += truncated
    stats.samples += 1
    for side in ("chosen", "rejected"):
        stats.tokens += len(sample[f"{side}_tokens"])
        stats.trained_tokens += sum(label != CROSS_ENTROPY_IGNORE_IDX for label in sample[f"{side}_labels"][1:])
    return sample


def collate_preference(batch: list[dict[str, list[int]]], padding_idx: int = 0) -> dict[str, torch.Tensor]:
    """Pairs -> `tokens`, `labels`: [2 * pairs, s], the chosen rows first, then the rejected ones in the
    same order, right-padded together so one forward scores both."""
    rows = [{"tokens": s[f"{side}_tokens"], "labels": s[f"{side}_labels"]} for side in ("chosen", "rejected") for s in batch]
    return padded_collate_sft(rows, padding_idx=padding_idx)
