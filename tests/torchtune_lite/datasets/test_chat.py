"""chat_dataset: only assistant turns are trained on unless train_on_input."""

from __future__ import annotations

import pytest

from torchtune_lite.data import CROSS_ENTROPY_IGNORE_IDX as IGN
from torchtune_lite.data import DataFileError, PackedDataset
from torchtune_lite.datasets import chat_dataset

CONVERSATION = [
    {"role": "system", "content": "You are a pirate."},
    {"role": "user", "content": "Where does the crab live?"},
    {"role": "assistant", "content": "In the sea, matey!"},
    {"role": "user", "content": "And the hen?"},
    {"role": "assistant", "content": "On the farm, arr!"},
]


def _pieces(tokenizer):
    return [
        tokenizer.encode(turn["content"], add_bos=i == 0, add_eos=turn["role"] == "assistant")
        for i, turn in enumerate(CONVERSATION)
    ]


def test_only_assistant_turns_trained(tokenizer, write_json):
    ds = chat_dataset(tokenizer, data_files=write_json("c.json", [{"messages": CONVERSATION}]))
    pieces = _pieces(tokenizer)
    expected_labels = []
    for turn, ids in zip(CONVERSATION, pieces):
        expected_labels += ids if turn["role"] == "assistant" else [IGN] * len(ids)
    assert ds[0]["tokens"] == [t for ids in pieces for t in ids]
    assert ds[0]["labels"] == expected_labels
    assert ds[0]["tokens"].count(tokenizer.eos_id) == 2


def test_train_on_input(tokenizer, write_json):
    ds = chat_dataset(tokenizer, data_files=write_json("c.json", [{"messages": CONVERSATION}]), train_on_input=True)
    assert ds[0]["labels"] == ds[0]["tokens"]


def test_conversation_column_and_jsonl(tokenizer, tmp_path):
    import json

    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"conversation": CONVERSATION}) + "\n" + json.dumps({"conversation": CONVERSATION[:3]}) + "\n")
    ds = chat_dataset(tokenizer, data_files=str(path), conversation_column="conversation")
    assert len(ds) == 2 and ds[1]["tokens"] == [t for ids in _pieces(tokenizer)[:3] for t in ids]


def test_no_assistant_turn_is_skipped(tokenizer, write_json):
    rows = [{"messages": CONVERSATION}, {"messages": CONVERSATION[:2]}]
    with pytest.warns(UserWarning, match="skipped 1 of 2"):
        ds = chat_dataset(tokenizer, data_files=write_json("c.json", rows))
    assert len(ds) == 1


def test_unknown_role(tokenizer, write_json):
    rows = [{"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}]}]
    with pytest.raises(DataFileError, match="unknown role 'tool'"):
        chat_dataset(tokenizer, data_files=write_json("c.json", rows))


def test_turn_without_content(tokenizer, write_json):
    rows = [{"messages": [{"role": "user", "text": "x"}]}]
    with pytest.raises(DataFileError, match=r"c.json row 1: column 'messages' turn 0 has no 'content' \(found: \['role', 'text'\]\)"):
        chat_dataset(tokenizer, data_files=write_json("c.json", rows))


def test_missing_conversation_column(tokenizer, write_json):
    with pytest.raises(DataFileError, match=r"row 1: column 'messages': the row has no 'messages' \(found: \['conversations'\]\): fix the row or set dataset.conversation_column"):
        chat_dataset(tokenizer, data_files=write_json("c.json", [{"conversations": CONVERSATION}]))


def test_packed(make_tokenizer, write_json):
    ds = chat_dataset(make_tokenizer(64), data_files=write_json("c.json", [{"messages": CONVERSATION}] * 3), packed=True)
    assert isinstance(ds, PackedDataset) and all(len(r["tokens"]) == 64 for r in ds)


def test_new_system_prompt_replaces_the_conversations_own(tokenizer, write_json):
    path = write_json("c.json", [{"messages": CONVERSATION}])
    for train_on_input in (False, True):
        ds = chat_dataset(tokenizer, data_files=path, new_system_prompt="Be terse.", train_on_input=train_on_input)
        system = tokenizer.encode("Be terse.", add_bos=True, add_eos=False)
        rest = [tokenizer.encode(t["content"], add_bos=False, add_eos=t["role"] == "assistant") for t in CONVERSATION[1:]]
        assert ds[0]["tokens"] == system + [t for ids in rest for t in ids]
        assert ds[0]["labels"][: len(system)] == [IGN] * len(system)
        assert "pirate" not in tokenizer.decode(ds[0]["tokens"])


def test_split(tokenizer, write_json):
    rows = [{"messages": CONVERSATION[:3]}, {"messages": CONVERSATION}, {"messages": CONVERSATION[:3]}, {"messages": CONVERSATION}]
    path = write_json("c.json", rows)
    assert [len(s["tokens"]) for s in chat_dataset(tokenizer, data_files=path, split="train[50%:]")] == [
        len(s["tokens"]) for s in chat_dataset(tokenizer, data_files=path)
    ][2:]


def test_conversation_not_a_list(tokenizer, write_json):
    with pytest.raises(DataFileError, match="must be a list of"):
        chat_dataset(tokenizer, data_files=write_json("c.json", [{"messages": "hello"}]))


def test_llama2_chat_template_through_the_tokenizer(tokenizer, write_json):
    from torchtune_lite.models.llama2 import Llama2Tokenizer

    chat_tok = Llama2Tokenizer(tokenizer.path, prompt_template="llama2_chat")
    ds = chat_dataset(chat_tok, data_files=write_json("c.json", [{"messages": CONVERSATION[:3]}]))
    first = "[INST] <<SYS>>\nYou are a pirate.\n<</SYS>>\n\nWhere does the crab live? [/INST]"
    prompt = tokenizer.encode(first, add_bos=True, add_eos=False)
    answer = tokenizer.encode("In the sea, matey!", add_bos=False, add_eos=True)
    assert ds[0]["tokens"] == prompt + answer
    assert ds[0]["labels"] == [IGN] * len(prompt) + answer
