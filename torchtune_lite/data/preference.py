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
from torchtune_lite.data.messages import Message

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


class PreferenceDataError(ValueError):
    """A row that cannot be a preference pair; the message names the file, row and column."""


@dataclass(frozen=True)
class PreferencePair:
    prompt: tuple[Message, ...]  # context, never trained on
    chosen: str
    rejected: str


def pair_from_row(row: dict[str, Any], where: str) -> PreferencePair:
    """The pair a row holds, in any of the module's shapes; `where` ("data.json row 3") goes in errors."""
    for column in ("chosen", "rejected"):
        if column not in row:
            raise PreferenceDataError(f"{where}: no column {column!r} (found {sorted(row)}): map it with column_map")
    chosen, rejected, prompt = row["chosen"], row["rejected"], row.get("prompt")
    if isinstance(chosen, list) and isinstance(rejected, list):
        pair = _pair_from_message_lists(chosen, rejected, prompt, where)
    elif isinstance(chosen, str) and isinstance(rejected, str):
        if prompt is None:
            pair = _pair_from_transcripts(chosen, rejected, where)
        else:
            pair = PreferencePair(_prompt_messages(prompt, where), chosen, rejected)
    else:
        raise PreferenceDataError(
            f"{where}: 'chosen' and 'rejected' must both be text or both be message lists, "
            f"got {type(chosen).__name__} and {type(rejected).__name__}"
        )
    _check(pair, where)
    return pair


def _pair_from_message_lists(chosen: list, rejected: list, prompt: Any, where: str) -> PreferencePair:
    chosen_msgs, rejected_msgs = _messages(chosen, where, "chosen"), _messages(rejected, where, "rejected")
    for column, msgs in (("chosen", chosen_msgs), ("rejected", rejected_msgs)):
        if not msgs or msgs[-1].role != "assistant":
            raise PreferenceDataError(f"{where}: column {column!r} must end with an assistant message")
    if prompt is not None:  # the lists are the answers; the prompt comes separately
        shared = (*_prompt_messages(prompt, where), *chosen_msgs[:-1])
        if chosen_msgs[:-1] != rejected_msgs[:-1]:
            raise PreferenceDataError(f"{where}: 'chosen' and 'rejected' differ before their last message")
        return PreferencePair(shared, chosen_msgs[-1].content, rejected_msgs[-1].content)
    if chosen_msgs[:-1] != rejected_msgs[:-1]:
        raise PreferenceDataError(
            f"{where}: the conversations in 'chosen' and 'rejected' differ before their last assistant message, "
            "so they share no prompt: give a separate 'prompt' column or fix the row"
        )
    return PreferencePair(tuple(chosen_msgs[:-1]), chosen_msgs[-1].content, rejected_msgs[-1].content)


def _pair_from_transcripts(chosen: str, rejected: str, where: str) -> PreferencePair:
    chosen_prompt, chosen_answer = _split_transcript(chosen, where, "chosen")
    rejected_prompt, rejected_answer = _split_transcript(rejected, where, "rejected")
    if chosen_prompt != rejected_prompt:
        raise PreferenceDataError(
            f"{where}: the transcripts in 'chosen' and 'rejected' differ before their last '\\n\\nAssistant:' turn, "
            "so they share no prompt"
        )
    return PreferencePair(chosen_prompt, chosen_answer, rejected_answer)


def _split_transcript(text: str, where: str, column: str) -> tuple[tuple[Message, ...], str]:
    """'\\n\\nHuman: hi\\n\\nAssistant: hello' -> ((user 'hi',), 'hello')."""
    pieces = _HH_TURN.split(text)
    if len(pieces) < 5 or pieces[-2] != "Assistant":
        raise PreferenceDataError(
            f"{where}: column {column!r} has no prompt: expected a string 'prompt' column or an Anthropic-HH "
            "transcript ('\\n\\nHuman: ...\\n\\nAssistant: ...')"
        )
    roles = {"Human": "user", "Assistant": "assistant"}
    turns = [Message(roles[role], body.strip(), masked=True) for role, body in zip(pieces[1:-2:2], pieces[2:-2:2])]
    return tuple(turns), pieces[-1].strip()


def _prompt_messages(prompt: Any, where: str) -> tuple[Message, ...]:
    if isinstance(prompt, str):
        return (Message("user", prompt, masked=True),)
    if isinstance(prompt, list):
        return tuple(_messages(prompt, where, "prompt"))
    raise PreferenceDataError(f"{where}: column 'prompt' must be text or a message list, got {type(prompt).__name__}")


def _messages(items: list, where: str, column: str) -> list[Message]:
    messages = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "role" not in item or "content" not in item:
            raise PreferenceDataError(f"{where}: {column}[{i}] is not a {{role, content}} message")
        try:
            messages.append(Message(item["role"], item["content"], masked=True))
        except ValueError as err:
            raise PreferenceDataError(f"{where}: {column}[{i}]: {err}") from None
    return messages


def _check(pair: PreferencePair, where: str) -> None:
    for column, answer in (("chosen", pair.chosen), ("rejected", pair.rejected)):
        if not answer.strip():
            raise PreferenceDataError(f"{where}: column {column!r} has an empty answer: drop the row or fill it")
    if pair.chosen == pair.rejected:
        raise PreferenceDataError(f"{where}: 'chosen' and 'rejected' are the same answer, so the pair teaches nothing: drop the row")


def tokenize_pair(tokenizer: Any, pair: PreferencePair) -> Optional[dict[str, list[int]]]:
    """Both sequences through the tokenizer's own chat formatting, labels on the answer (and its end token)
    only; None when truncation leaves either answer nothing to score."""
    sample = {}
    for side, answer in (("chosen", pair.chosen), ("rejected", pair.rejected)):
        tokens, mask = tokenizer.tokenize_messages([*pair.prompt, Message("assistant", answer)])
        labels = [CROSS_ENTROPY_IGNORE_IDX if masked else token for token, masked in zip(tokens, mask)]
        if all(label == CROSS_ENTROPY_IGNORE_IDX for label in labels[1:]):
            return None
        sample[f"{side}_tokens"], sample[f"{side}_labels"] = tokens, labels
    return sample


def collate_preference(batch: list[dict[str, list[int]]], padding_idx: int = 0) -> dict[str, torch.Tensor]:
    """Pairs -> `tokens`, `labels`: [2 * pairs, s], the chosen rows first, then the rejected ones in the
    same order, right-padded together so one forward scores both."""
    rows = [{"tokens": s[f"{side}_tokens"], "labels": s[f"{side}_labels"]} for side in ("chosen", "rejected") for s in batch]
    return padded_collate_sft(rows, padding_idx=padding_idx)
