"""instruct_dataset / alpaca_dataset: masking, truncation and skipping, column maps, packing, bundled data."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from torchtune_lite.data import CROSS_ENTROPY_IGNORE_IDX as IGN
from torchtune_lite.data import DataFileError, PackedDataset, format_alpaca_prompt, padded_collate_sft
from torchtune_lite.datasets import SFTDataset, alpaca_dataset, instruct_dataset

ROWS = [
    {"instruction": "Name a fish.", "input": "", "output": "Cod, matey!"},
    {"instruction": "Where does the crab live?", "input": "It is a red crab.", "output": "In the sea, matey!"},
]


def _expected(tokenizer, row):
    """tokens, number of prompt tokens (BOS + prompt), built straight from the tokenizer."""
    prompt = tokenizer.encode(format_alpaca_prompt(row["instruction"], row["input"]), add_bos=True, add_eos=False)
    answer = tokenizer.encode(row["output"], add_bos=False, add_eos=True)
    return prompt + answer, len(prompt)


def test_prompt_masked_by_default(tokenizer, write_json):
    ds = instruct_dataset(tokenizer, data_files=write_json("d.json", ROWS))
    assert isinstance(ds, SFTDataset) and len(ds) == 2
    for sample, row in zip(ds, ROWS):
        tokens, n_prompt = _expected(tokenizer, row)
        assert sample["tokens"] == tokens
        assert sample["labels"] == [IGN] * n_prompt + tokens[n_prompt:]
        assert sample["labels"][-1] == tokenizer.eos_id


def test_train_on_input(tokenizer, write_json):
    ds = instruct_dataset(tokenizer, data_files=write_json("d.json", ROWS), train_on_input=True)
    for sample, row in zip(ds, ROWS):
        assert sample["labels"] == sample["tokens"] == _expected(tokenizer, row)[0]


def test_alpaca_trains_on_input_by_default(tokenizer, write_json):
    path = write_json("d.json", ROWS)
    assert alpaca_dataset(tokenizer, data_files=path)[0]["labels"] == alpaca_dataset(tokenizer, data_files=path)[0]["tokens"]
    masked = alpaca_dataset(tokenizer, data_files=path, train_on_input=False)[0]["labels"]
    assert masked[0] == IGN


def test_masked_labels_are_ignored_by_cross_entropy(tokenizer, write_json):
    ds = instruct_dataset(tokenizer, data_files=write_json("d.json", ROWS))
    batch = padded_collate_sft([ds[0], ds[1]])
    torch.manual_seed(0)
    logits = torch.randn(*batch["labels"].shape, tokenizer.vocab_size)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), reduction="sum")
    keep = batch["labels"] != IGN
    manual = torch.nn.functional.cross_entropy(logits[keep], batch["labels"][keep], reduction="sum")
    torch.testing.assert_close(loss, manual)


def test_long_prompts_lose_their_start_and_long_answers_drop_in_one_warning(make_tokenizer, write_json):
    long_prompt = {"instruction": "Hi", "input": "tell me " * 60, "output": "Arr!"}
    long_answer = {"instruction": "Hi", "input": "", "output": "word " * 100}
    rows = [long_prompt, ROWS[0], long_answer, long_prompt]
    tokenizer = make_tokenizer(64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = instruct_dataset(tokenizer, data_files=write_json("d.json", rows))
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "2 of 4 samples were longer than max_seq_len=64 and were truncated" in messages[0]
    assert "dropped 1 of 4 whose answer alone is longer" in messages[0]
    assert len(ds) == 3 and ds[1]["tokens"] == _expected(tokenizer, ROWS[0])[0]
    full, n_prompt = _expected(tokenizer, long_prompt)
    answer = full[n_prompt:]
    # BOS, then the prompt's last tokens, then the whole answer (trained, EOS included)
    assert ds[0]["tokens"] == [tokenizer.bos_id] + full[n_prompt - (64 - 1 - len(answer)):n_prompt] + answer
    assert ds[0]["labels"] == [IGN] * (64 - len(answer)) + answer


def test_nothing_left_raises(make_tokenizer, write_json):
    rows = [{"instruction": "Hi", "input": "", "output": "word " * 100}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="no samples left"):
            instruct_dataset(make_tokenizer(16), data_files=write_json("d.json", rows))


def test_empty_output_still_trains_on_eos(tokenizer, write_json):
    # the only trained token would be EOS; it is still a target, so the sample stays
    ds = instruct_dataset(tokenizer, data_files=write_json("d.json", [{"instruction": "x", "input": "", "output": ""}]))
    assert [label for label in ds[0]["labels"] if label != IGN] == [tokenizer.eos_id]


def test_column_map(tokenizer, write_json):
    rows = [{"question": r["instruction"], "context": r["input"], "answer": r["output"]} for r in ROWS]
    ds = instruct_dataset(
        tokenizer,
        data_files=write_json("d.json", rows),
        column_map={"instruction": "question", "input": "context", "output": "answer"},
    )
    assert ds[1]["tokens"] == _expected(tokenizer, ROWS[1])[0]


def test_column_map_wins_over_a_same_named_column(tokenizer, write_json):
    rows = [{"instruction": "ignored", "prompt": "Name a fish.", "output": "Cod, matey!"}]
    ds = instruct_dataset(tokenizer, data_files=write_json("d.json", rows), column_map={"instruction": "prompt"})
    assert ds[0]["tokens"] == _expected(tokenizer, ROWS[0])[0]


def test_column_map_naming_a_missing_column(tokenizer, write_json):
    with pytest.raises(DataFileError, match=r"d.json row 1: column 'question': the row has no 'question' \(found: \['output', 'prompt'\]\)"):
        instruct_dataset(tokenizer, data_files=write_json("d.json", [{"prompt": "a", "output": "b"}]), column_map={"instruction": "question"})


def test_missing_columns(tokenizer, write_json):
    with pytest.raises(DataFileError, match=r"row 1: column 'output': the row has no 'output' \(found: \['input', 'instruction', 'response'\]\)"):
        instruct_dataset(tokenizer, data_files=write_json("d.json", [{"instruction": "a", "input": "", "response": "b"}]))


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_other_formats_give_the_same_samples(tokenizer, tmp_path, write_json, fmt):
    reference = instruct_dataset(tokenizer, data_files=write_json("d.json", ROWS))
    path = tmp_path / f"d.{fmt}"
    if fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in ROWS))
        source = "json"
    elif fmt == "csv":
        path.write_text('instruction,input,output\nName a fish.,,"Cod, matey!"\n'
                        'Where does the crab live?,It is a red crab.,"In the sea, matey!"\n')
        source = "csv"
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(ROWS), path)
        source = "parquet"
    ds = instruct_dataset(tokenizer, source=source, data_files=str(path))
    assert [s for s in ds] == [s for s in reference]


def test_packed(make_tokenizer, write_json):
    tokenizer = make_tokenizer(128)
    unpacked = instruct_dataset(tokenizer, data_files=write_json("d.json", ROWS * 4))
    ds = instruct_dataset(tokenizer, data_files=write_json("d.json", ROWS * 4), packed=True)
    assert isinstance(ds, PackedDataset)
    assert all(len(row["tokens"]) == 128 for row in ds)
    real = [t for row in ds for t, n in _real_tokens(row)]
    assert real == [t for s in unpacked for t in s["tokens"]]


def _real_tokens(row):
    """(token, sample length) for the tokens of real samples (padding is the last block, made of pad ids)."""
    out, start = [], 0
    for n in row["seq_lens"]:
        block = row["tokens"][start : start + n]
        if not (start + n == len(row["tokens"]) and all(t == 0 for t in block)):
            out += [(t, n) for t in block]
        start += n
    return out


def test_packed_needs_max_seq_len(tokenizer, write_json):
    with pytest.raises(ValueError, match="max_seq_len"):
        instruct_dataset(tokenizer, data_files=write_json("d.json", ROWS), packed=True)


def test_bundled_instruct_data_builds(make_tokenizer, assets):
    tokenizer = make_tokenizer(256)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the bundled data needs no truncation or skipping
        ds = alpaca_dataset(tokenizer, data_files=str(assets / "instruct_train.json"), train_on_input=False)
    rows = json.loads((assets / "instruct_train.json").read_text())
    assert len(ds) == len(rows)
    first = ds[0]
    assert tokenizer.decode([t for t, label in zip(first["tokens"], first["labels"]) if label != IGN]) == rows[0]["output"]
    assert tokenizer.sp.unk_id() not in first["tokens"]


def test_split_train_and_validation_from_one_file(tokenizer, write_json):
    rows = [{"instruction": f"Name fish number {i}.", "input": "", "output": f"Fish {i}, matey!"} for i in range(10)]
    path = write_json("d.json", rows)
    train = instruct_dataset(tokenizer, data_files=path, split="train[:80%]")
    val = instruct_dataset(tokenizer, data_files=path, split="train[80%:]")
    everything = instruct_dataset(tokenizer, data_files=path)
    assert (len(train), len(val)) == (8, 2)
    assert [s["tokens"] for s in train] + [s["tokens"] for s in val] == [s["tokens"] for s in everything]
    assert val[0]["tokens"] == _expected(tokenizer, rows[8])[0]
    assert alpaca_dataset(tokenizer, data_files=path, split="train[:3]")[2]["tokens"] == everything[2]["tokens"]


def test_bad_split(tokenizer, write_json):
    with pytest.raises(ValueError, match="dataset.split='validation': .* has no split 'validation'"):
        instruct_dataset(tokenizer, data_files=write_json("d.json", ROWS), split="validation")


def test_new_system_prompt_is_prepended_and_masked(tokenizer, write_json):
    path = write_json("d.json", ROWS)
    for train_on_input in (False, True):
        ds = instruct_dataset(tokenizer, data_files=path, new_system_prompt="Talk like a pirate.", train_on_input=train_on_input)
        system = tokenizer.encode("Talk like a pirate.", add_bos=True, add_eos=False)
        tokens, n_prompt = _expected(tokenizer, ROWS[1])
        assert ds[1]["tokens"] == system + tokens[1:]  # one BOS, before the system prompt
        prompt_labels = [IGN] * (n_prompt - 1) if not train_on_input else tokens[1:n_prompt]
        assert ds[1]["labels"] == [IGN] * len(system) + prompt_labels + tokens[n_prompt:]


def test_bundled_validation_file_is_held_out(make_tokenizer, assets):
    tokenizer = make_tokenizer(256)
    train = json.loads((assets / "instruct_train.json").read_text())
    val_rows = json.loads((assets / "instruct_val.json").read_text())
    ds = alpaca_dataset(tokenizer, data_files=str(assets / "instruct_val.json"), train_on_input=False)
    assert len(ds) == len(val_rows) >= 50
    assert not {r["instruction"] for r in train} & {r["instruction"] for r in val_rows}


def test_nested_column_map_reads_self_instruct_seed_tasks(tokenizer, tmp_path):
    # self-instruct's seed_tasks.jsonl keeps the input and output inside `instances`
    row = {"id": "seed_task_0", "instruction": ROWS[1]["instruction"],
           "instances": [{"input": ROWS[1]["input"], "output": ROWS[1]["output"]}], "is_classification": False}
    path = tmp_path / "seed_tasks.jsonl"
    path.write_text(json.dumps(row) + "\n")
    ds = instruct_dataset(tokenizer, data_files=str(path),
                          column_map={"input": "instances.0.input", "output": "instances.0.output"})
    tokens, n_prompt = _expected(tokenizer, ROWS[1])
    assert ds[0]["tokens"] == tokens and ds[0]["labels"] == [IGN] * n_prompt + tokens[n_prompt:]
    # mapping the whole list where text is expected is an error, not a repr of the list trained on
    with pytest.raises(DataFileError) as err:
        instruct_dataset(tokenizer, data_files=str(path), column_map={"output": "instances"})
    assert str(err.value) == (f"{path} row 1: column 'instances' holds a list where text is expected: "
                              "map the text inside it with a path (e.g. instances.0.output)")
    with pytest.raises(ValueError, match=r"entry 'output:instances' is malformed \(no space after the colon\)"):
        instruct_dataset(tokenizer, data_files=str(path), column_map={"output:instances": None})
