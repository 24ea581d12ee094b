"""ShareGPT files (`conversations: [{from, value}]`) with a role map, and conversations of any shape through
`transform` (an Open-Assistant message tree): exact ids and labels, checked by hand on the bundled tokenizer."""

from __future__ import annotations

import json

import pytest

from torchtune_lite.data import CROSS_ENTROPY_IGNORE_IDX as IGN
from torchtune_lite.data import DataFileError
from torchtune_lite.datasets import chat_dataset, sharegpt_dataset

# the bundled tokenizer's pieces: "Be brief." -> ▁B e ▁b ri ef . ; "Hi" -> ▁H i ; "Arr!" -> ▁Arr ! ; "Bye" -> ▁B ye
BE_BRIEF, HI, ARR, BYE = [533, 980, 262, 279, 415, 994], [726, 988], [543, 1007], [533, 879]
BOS, EOS = 1, 2


def _write_jsonl(tmp_path, rows) -> str:
    path = tmp_path / "chats.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def test_sharegpt_multi_turn_with_system_trains_every_answer(tokenizer, tmp_path):
    row = {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
                             {"from": "gpt", "value": "Arr!"}, {"from": "human", "value": "Bye"}, {"from": "gpt", "value": "Arr!"}]}
    ds = sharegpt_dataset(tokenizer, data_files=_write_jsonl(tmp_path, [row]))
    assert ds[0]["tokens"] == [BOS, *BE_BRIEF, *HI, *ARR, EOS, *BYE, *ARR, EOS]
    assert ds[0]["labels"] == [IGN] * 9 + [*ARR, EOS] + [IGN] * 2 + [*ARR, EOS]


def test_sharegpt_role_map_reads_open_assistant_roles(tokenizer, tmp_path):
    row = {"conversations": [{"from": "prompter", "value": "Hi"}, {"from": "assistant", "value": "Arr!"}]}
    path = _write_jsonl(tmp_path, [row])
    ds = sharegpt_dataset(tokenizer, data_files=path, role_map={"prompter": "user"})
    assert ds[0]["tokens"] == [BOS, *HI, *ARR, EOS] and ds[0]["labels"] == [IGN] * 3 + [*ARR, EOS]
    with pytest.raises(DataFileError) as err:
        sharegpt_dataset(tokenizer, data_files=path)
    assert str(err.value) == (
        f"{path} row 1: column 'conversations' turn 0: unknown role 'prompter' (known: ['assistant', 'gpt', 'human', "
        "'system', 'user']): add it to dataset.role_map, e.g. role_map={prompter: user}")


@pytest.mark.parametrize("row, message", [
    ({"conversations": []}, "row 1: column 'conversations' is an empty conversation: remove the row"),
    ({"conversations": [{"role": "user", "content": "Hi"}]},
     "row 1: column 'conversations' turn 0 has no 'from' (found: ['content', 'role']): dataset.conversation_style=sharegpt reads {from, value}"),
    ({"conversations": [{"from": "human", "value": ["Hi"]}]},
     "row 1: column 'conversations' turn 0: content is a list where text is expected: store it as a string"),
    ({"conversations": "Hi"}, "row 1: column 'conversations' holds a str: it must be a list of {from, value} objects"),
])
def test_bad_conversations_name_file_row_and_key(tokenizer, tmp_path, row, message):
    good = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Arr!"}]}
    path = _write_jsonl(tmp_path, [good, row]) if "[]" in json.dumps(row) else _write_jsonl(tmp_path, [row])
    with pytest.raises(DataFileError) as err:
        sharegpt_dataset(tokenizer, data_files=path)
    expected_row = "row 2" if "[]" in json.dumps(row) else "row 1"
    assert str(err.value) == f"{path} {message.replace('row 1', expected_row)}"


def test_malformed_role_map_is_refused(tokenizer, tmp_path):
    with pytest.raises(ValueError, match=r"dataset.role_map entry 'prompter:user' is malformed \(no space after the colon\)"):
        sharegpt_dataset(tokenizer, data_files=_write_jsonl(tmp_path, [{}]), role_map={"prompter:user": None})
    with pytest.raises(ValueError, match=r"dataset.role_map.prompter='human' is not a role"):
        sharegpt_dataset(tokenizer, data_files=_write_jsonl(tmp_path, [{}]), role_map={"prompter": "human"})


# An Open-Assistant tree (en_100_tree.jsonl layout): the README's `transform` example follows the best-ranked reply.
OA_TREE = {"message_tree_id": "t1", "prompt": {"text": "Hi", "role": "prompter", "replies": [
    {"text": "Bye", "role": "assistant", "rank": 1, "replies": []},
    {"text": "Arr!", "role": "assistant", "rank": 0, "replies": [
        {"text": "Bye", "role": "prompter", "replies": [{"text": "Arr!", "role": "assistant", "rank": 0, "replies": []}]}]},
]}}
OA_MODULE = '''
def to_messages(row):
    """Open-Assistant message tree -> the conversation along the best-ranked replies."""
    messages, node = [], row["prompt"]
    while node is not None:
        messages.append({"role": "user" if node["role"] == "prompter" else "assistant", "content": node["text"]})
        replies = sorted(node["replies"], key=lambda r: r.get("rank") if r.get("rank") is not None else 99)
        node = replies[0] if replies else None
    return messages
'''


def test_transform_reads_an_open_assistant_tree(tokenizer, tmp_path, monkeypatch):
    (tmp_path / "oa_transform.py").write_text(OA_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    ds = chat_dataset(tokenizer, data_files=_write_jsonl(tmp_path, [OA_TREE]), transform="oa_transform.to_messages")
    assert ds[0]["tokens"] == [BOS, *HI, *ARR, EOS, *BYE, *ARR, EOS]
    assert ds[0]["labels"] == [IGN] * 3 + [*ARR, EOS] + [IGN] * 2 + [*ARR, EOS]


def test_transform_output_is_checked(tokenizer, tmp_path):
    path = _write_jsonl(tmp_path, [{"a": 1}])
    with pytest.raises(DataFileError, match=r"row 1: dataset.transform message 0: unknown role 'bot'"):
        chat_dataset(tokenizer, data_files=path, transform=lambda row: [{"role": "bot", "content": "x"}])
    with pytest.raises(DataFileError, match=r"row 1: dataset.transform returned list \(empty\)"):
        chat_dataset(tokenizer, data_files=path, transform=lambda row: [])
    with pytest.raises(ValueError, match=r"dataset.transform=no_such_module.f: cannot import 'no_such_module'"):
        chat_dataset(tokenizer, data_files=path, transform="no_such_module.f")
