"""Conversations in their published layouts -> Messages: OpenAI `messages: [{role, content}]`, ShareGPT
`conversations: [{from, value}]` with a role map, and whatever a user's `transform` function returns."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from torchtune_lite.data.columns import RowError
from torchtune_lite.data.messages import ROLES, Message

# ShareGPT's own role names; `role_map` adds to them (Open-Assistant's `prompter: user`).
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
# conversation_style -> (role key, content key) of each turn
STYLES = {"openai": ("role", "content"), "sharegpt": ("from", "value")}

Transform = Callable[[Mapping[str, Any]], Sequence[Union[Message, Mapping[str, Any]]]]


def check_role_map(role_map: Optional[Mapping[str, Any]], key: str = "dataset.role_map") -> dict[str, str]:
    if role_map is None:
        return {}
    if not isinstance(role_map, Mapping):
        raise ValueError(f"{key}={role_map!r} is malformed: write a mapping such as {{prompter: user}}")
    for theirs, ours in role_map.items():
        if ours is None and ":" in str(theirs):
            a, _, b = str(theirs).partition(":")
            raise ValueError(f"{key} entry {theirs!r} is malformed (no space after the colon): write {{{a}: {b}}}")
        if ours not in ROLES:
            raise ValueError(f"{key}.{theirs}={ours!r} is not a role: map it to one of {list(ROLES)}")
    return {str(k): str(v) for k, v in role_map.items()}


def turns_to_messages(
    turns: Any,
    *,
    column: str,
    style: str = "openai",
    role_map: Optional[Mapping[str, str]] = None,
    train_on_input: bool = False,
    new_system_prompt: Optional[str] = None,
) -> list[Message]:
    """One conversation as Messages: only assistant turns train unless `train_on_input`; `new_system_prompt`
    replaces the conversation's own system turns and never trains."""
    role_key, content_key = STYLES[style]
    roles = {**(SHAREGPT_ROLES if style == "sharegpt" else {r: r for r in ROLES}), **(role_map or {})}
    if not isinstance(turns, list):
        raise RowError(f"column '{column}' holds a {type(turns).__name__}: it must be a list of {{{role_key}, {content_key}}} objects")
    if not turns:
        raise RowError(f"column '{column}' is an empty conversation: remove the row")
    raw = []
    for j, turn in enumerate(turns):
        if not isinstance(turn, Mapping):
            raise RowError(f"column '{column}' turn {j} is a {type(turn).__name__}, not a {{{role_key}, {content_key}}} object")
        for key in (role_key, content_key):
            if turn.get(key) is None:
                found = sorted(k for k, v in turn.items() if v is not None)
                raise RowError(f"column '{column}' turn {j} has no '{key}' (found: {found}): "
                               f"dataset.conversation_style={style} reads {{{role_key}, {content_key}}}")
        raw.append((turn[role_key], turn[content_key], f"column '{column}' turn {j}"))
    return to_messages(raw, roles=roles, train_on_input=train_on_input, new_system_prompt=new_system_prompt)


def to_messages(
    raw: Sequence[tuple[Any, Any, str]],
    *,
    roles: Mapping[str, str],
    train_on_input: bool,
    new_system_prompt: Optional[str],
) -> list[Message]:
    """(role as written, content, where) triples -> Messages, each checked: a known role, text content."""
    messages = [Message("system", new_system_prompt, masked=True)] if new_system_prompt else []
    for role_written, content, where in raw:
        role = roles.get(role_written) if isinstance(role_written, str) else None
        if role is None:
            raise RowError(f"{where}: unknown role {role_written!r} (known: {sorted(roles)}): "
                           f"add it to dataset.role_map, e.g. role_map={{{role_written}: user}}")
        if not isinstance(content, str):
            raise RowError(f"{where}: content is a {type(content).__name__} where text is expected: store it as a string")
        if role == "system" and new_system_prompt:
            continue
        messages.append(Message(role, content, masked=role != "assistant" and not train_on_input))
    return messages


def transformed_messages(
    row: Mapping[str, Any], transform: Transform, *, train_on_input: bool, new_system_prompt: Optional[str]
) -> list[Message]:
    """A user function's output (Messages, or {role, content} dicts) checked like any conversation."""
    out = transform(row)
    if not isinstance(out, (list, tuple)) or not out:
        raise RowError(f"dataset.transform returned {type(out).__name__ if out is not None else 'None'}"
                       f"{' (empty)' if isinstance(out, (list, tuple)) else ''}: it must return a non-empty list of messages")
    raw = []
    for j, m in enumerate(out):
        where = f"dataset.transform message {j}"
        if isinstance(m, Message):
            raw.append((m.role, m.content, where))
        elif isinstance(m, Mapping) and "role" in m and "content" in m:
            raw.append((m["role"], m["content"], where))
        else:
            raise RowError(f"{where} is {m!r}: return Message objects or {{role, content}} dicts")
    return to_messages(raw, roles={r: r for r in ROLES}, train_on_input=train_on_input, new_system_prompt=new_system_prompt)


def import_transform(transform: Union[str, Transform, None]) -> Optional[Transform]:
    """`my_module.to_messages` -> the function (the config names it as a dotted path)."""
    if transform is None or callable(transform):
        return transform
    module_name, _, attr = str(transform).rpartition(".")
    if not module_name:
        raise ValueError(f"dataset.transform={transform!r} is not a dotted path: write my_module.to_messages")
    if os.getcwd() not in sys.path:  # `tune run` from the folder holding my_module.py, as `python -m` would find it
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ValueError(f"dataset.transform={transform}: cannot import {err.name!r}: put {module_name}.py on PYTHONPATH "
                         "(or in the folder you run tune from)") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"dataset.transform={transform}: {module_name} has no function {attr!r}")
    return fn


