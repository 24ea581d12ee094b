"""Preference rows in each common shape -> the same pair; bad rows -> one line naming row and column;
tokenized pairs score only the answers; batches put chosen rows before rejected ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchtune_lite.data.collate import CROSS_ENTROPY_IGNORE_IDX as IGNORE
from torchtune_lite.data.messages import Message
from torchtune_lite.data.file_loading import DataFileError
from torchtune_lite.data.preference import PreferencePair, collate_preference, pair_from_row, tokenize_pair
from torchtune_lite.data.stats import DataStats
from torchtune_lite.datasets import PreferenceDataset, preference_dataset
from torchtune_lite.models.llama2 import llama2_tokenizer

TOKENIZER = Path(__file__).resolve().parents[3] / "torchtune_lite" / "assets" / "tiny" / "tokenizer.model"
EXPECTED = PreferencePair((Message("user", "Where does the owl live?", masked=True),), "In a tree.", "Under the sea.")


@pytest.mark.parametrize(
    "row",
    [
        {"prompt": "Where does the owl live?", "chosen": "In a tree.", "rejected": "Under the sea."},
        {"prompt": "Where does the owl live?", "chosen": [{"role": "assistant", "content": "In a tree."}],
         "rejected": [{"role": "assistant", "content": "Under the sea."}]},
        {"prompt": [{"role": "user", "content": "Where does the owl live?"}],
         "chosen": [{"role": "assistant", "content": "In a tree."}], "rejected": [{"role": "assistant", "content": "Under the sea."}]},
        {"chosen": [{"role": "user", "content": "Where does the owl live?"}, {"role": "assistant", "content": "In a tree."}],
         "rejected": [{"role": "user", "content": "Where does the owl live?"}, {"role": "assistant", "content": "Under the sea."}]},
        {"chosen": "\n\nHuman: Where does the owl live?\n\nAssistant: In a tree.",
         "rejected": "\n\nHuman: Where does the owl live?\n\nAssistant: Under the sea."},
    ],
    ids=["strings", "answer-lists", "prompt-list", "conversations", "hh-transcripts"],
)
def test_every_shape_gives_the_same_pair(row):
    assert pair_from_row(row) == EXPECTED


def test_hh_transcript_keeps_earlier_turns_as_prompt():
    turns = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Where does the owl live?\n\nAssistant: "
    pair = pair_from_row({"chosen": turns + "In a tree.", "rejected": turns + "Under the sea."})
    assert [m.role for m in pair.prompt] == ["user", "assistant", "user"]
    assert pair.prompt[1].content == "Hello!" and all(m.masked for m in pair.prompt)
    assert (pair.chosen, pair.rejected) == ("In a tree.", "Under the sea.")


@pytest.mark.parametrize(
    "row, message",
    [
        ({"prompt": "q", "chosen": "same", "rejected": "same"}, "d.json row 7: 'chosen' and 'rejected' are the same answer"),
        ({"prompt": "q", "chosen": "a"}, r"d.json row 7: column 'rejected': the row has no 'rejected' \(found: \['chosen', 'prompt'\]\)"),
        ({"prompt": "q", "chosen": " ", "rejected": "b"}, "d.json row 7: column 'chosen' has an empty answer"),
        ({"chosen": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a"}],
          "rejected": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "b"}]},
         "d.json row 7: the conversations in 'chosen' and 'rejected' differ before"),
        ({"chosen": "\n\nHuman: q1\n\nAssistant: a", "rejected": "\n\nHuman: q2\n\nAssistant: b"},
         "d.json row 7: the transcripts in 'chosen' and 'rejected' differ"),
        ({"chosen": "a", "rejected": "b"}, "d.json row 7: column 'chosen' has no prompt"),
        ({"prompt": "q", "chosen": "a", "rejected": ["b"]}, "must both be text or both be message lists"),
        ({"chosen": [{"role": "robot", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]},
         r"d.json row 7: chosen\[0\]: Message role 'robot'"),
    ],
    ids=["identical", "missing-column", "empty-answer", "no-shared-prompt", "hh-no-shared-prompt", "no-prompt",
         "mixed-types", "unknown-role"],
)
def test_bad_rows_name_file_row_and_column(row, message):
    good = {"prompt": "q", "chosen": "a", "rejected": "b"}
    with pytest.raises(DataFileError, match=message) as err:
        PreferenceDataset([good] * 6 + [row], llama2_tokenizer(str(TOKENIZER)), name="d.json")
    assert "\n" not in str(err.value)


def test_tokenized_pair_scores_only_the_answers():
    tok = llama2_tokenizer(str(TOKENIZER))
    stats = DataStats()
    sample = tokenize_pair(tok, EXPECTED, stats)
    prompt = tok.encode("Where does the owl live?", add_bos=True, add_eos=False)
    for side, answer in (("chosen", "In a tree."), ("rejected", "Under the sea.")):
        answer_ids = tok.encode(answer, add_bos=False, add_eos=True)
        assert sample[f"{side}_tokens"] == prompt + answer_ids
        assert sample[f"{side}_labels"] == [IGNORE] * len(prompt) + answer_ids  # answer and its EOS only
    assert sample["chosen_tokens"] != sample["rejected_tokens"]
    assert stats.samples == 1 and stats.tokens == len(sample["chosen_tokens"]) + len(sample["rejected_tokens"])


def test_long_pairs_lose_prompt_first_and_answers_stay_whole():
    tok = llama2_tokenizer(str(TOKENIZER), max_seq_len=16)
    long_prompt = "Tell me, after a long and winding walk through the forest, where does the owl live?"
    rows = [{"prompt": long_prompt, "chosen": "In a tree.", "rejected": "Under the sea."},
            {"prompt": "q", "chosen": "In a tree. " * 10, "rejected": "Under the sea."}]
    with pytest.warns(UserWarning, match="1 of 2 pairs were longer than max_seq_len=16 .* dropped 1 whose answer alone"):
        ds = PreferenceDataset(rows, tok, name="d.json")
    assert len(ds) == 1 and ds.stats.truncated == 1 and ds.stats.dropped_too_long == 1
    sample = ds[0]
    for side, answer in (("chosen", "In a tree."), ("rejected", "Under the sea.")):
        answer_ids = tok.encode(answer, add_bos=False, add_eos=True)
        tokens = sample[f"{side}_tokens"]
        assert len(tokens) == 16 and tokens[0] == tok.bos_id and tokens[-len(answer_ids):] == answer_ids
        assert [t for t in sample[f"{side}_labels"] if t != IGNORE] == answer_ids


def test_file_with_column_map_and_alpaca_prompts(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"q": "Where does the owl live?", "good": "In a tree.", "bad": "Under the sea."}\n'
                    '{"q": "What does the fox eat?", "good": "Berries.", "bad": "Rocks."}\n')
    tok = llama2_tokenizer(str(TOKENIZER))
    ds = preference_dataset(tok, data_files=str(path), column_map={"prompt": "q", "chosen": "good", "rejected": "bad"},
                            prompt_format="alpaca")
    assert len(ds) == 2 and ds.prompt_format == "alpaca"
    from torchtune_lite.data import format_alpaca_prompt

    prompt = tok.encode(format_alpaca_prompt("What does the fox eat?"), add_bos=True, add_eos=False)
    assert ds[1]["chosen_tokens"][: len(prompt)] == prompt
    assert "2 pairs of 2 rows" in ds.summary(batch_size=2)


def test_batch_puts_chosen_rows_first():
    a = {"chosen_tokens": [1, 5, 6], "chosen_labels": [IGNORE, 5, 6], "rejected_tokens": [1, 7], "rejected_labels": [IGNORE, 7]}
    b = {"chosen_tokens": [1, 8], "chosen_labels": [IGNORE, 8], "rejected_tokens": [1, 9, 9, 9], "rejected_labels": [IGNORE, 9, 9, 9]}
    batch = collate_preference([a, b], padding_idx=0)
    assert batch["tokens"].tolist() == [[1, 5, 6, 0], [1, 8, 0, 0], [1, 7, 0, 0], [1, 9, 9, 9]]
    assert batch["labels"].tolist() == [[IGNORE, 5, 6, IGNORE], [IGNORE, 8, IGNORE, IGNORE],
                                        [IGNORE, 7, IGNORE, IGNORE], [IGNORE, 9, 9, 9]]
