"""`streaming=True`: the same samples as loading the file, split over ranks without overlap, shuffled
reproducibly per epoch, resumable, and read without holding the file (peak RSS flat in its size)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from torchtune_lite.data import padded_collate_sft
from torchtune_lite.datasets import instruct_dataset
from torchtune_lite.datasets._streaming import StreamingSFTDataset
from torchtune_lite.training.data_loading import batches_per_epoch, build_dataloader, epoch_batches

ROWS = [{"instruction": f"Say {i}", "input": "", "output": "Arr " * (1 + i % 7)} for i in range(40)]


@pytest.fixture
def jsonl(tmp_path) -> str:
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    return str(path)


def test_streamed_samples_equal_loaded_ones(tokenizer, jsonl):
    streamed = instruct_dataset(tokenizer, data_files=jsonl, streaming=True)
    assert isinstance(streamed, StreamingSFTDataset)
    assert list(streamed) == list(instruct_dataset(tokenizer, data_files=jsonl))
    sliced = instruct_dataset(tokenizer, data_files=jsonl, streaming=True, split="train[5:8]")
    assert list(sliced) == [instruct_dataset(tokenizer, data_files=jsonl)[i] for i in (5, 6, 7)]


def test_ranks_read_disjoint_rows_covering_the_stream(tokenizer, jsonl):
    everything = list(instruct_dataset(tokenizer, data_files=jsonl))
    shares = []
    for rank in range(2):
        ds = instruct_dataset(tokenizer, data_files=jsonl, streaming=True)
        ds.configure(rank=rank, world_size=2, shuffle=False, seed=0)
        shares.append(list(ds))
    assert shares[0] == everything[0::2] and shares[1] == everything[1::2]


def test_shuffle_is_reproducible_per_epoch_and_resume_replays_it(tokenizer, jsonl):
    def loader():
        ds = instruct_dataset(tokenizer, data_files=jsonl, streaming=True)
        return build_dataloader(ds, batch_size=4, shuffle=True, seed=7, collate_fn=padded_collate_sft)

    first, sampler = loader()
    assert batches_per_epoch(first) is None
    epoch0 = [b["tokens"].tolist() for b in epoch_batches(first, sampler, 0, max_batches=6)]
    epoch1 = [b["tokens"].tolist() for b in epoch_batches(first, sampler, 1, max_batches=6)]
    assert epoch0 != epoch1  # reshuffled each epoch
    again, sampler2 = loader()
    assert [b["tokens"].tolist() for b in epoch_batches(again, sampler2, 1, skip_batches=2, max_batches=6)] == epoch1[2:]


def test_packed_streaming_is_refused(make_tokenizer, jsonl):
    with pytest.raises(ValueError, match="packed=True with streaming=True is not supported"):
        instruct_dataset(make_tokenizer(64), data_files=jsonl, streaming=True, packed=True)


_READ_SOME = textwrap.dedent("""
    import sys
    from torchtune_lite.datasets import instruct_dataset
    from torchtune_lite.models.llama2._tokenizer import Llama2Tokenizer
    from torchtune_lite.training.memory import peak_rss_bytes
    tokenizer = Llama2Tokenizer(sys.argv[1], max_seq_len=128)
    ds = instruct_dataset(tokenizer, data_files=sys.argv[2], streaming=True)
    n = sum(1 for _, _ in zip(range(200), ds))
    print(n, peak_rss_bytes() // 2**20)  # this process's own peak (ru_maxrss would carry pytest's)
""")


def test_peak_rss_stays_flat_in_the_file_size(tmp_path, assets):
    """200 samples from a 40 MB file, then from a 160 MB one, each in a fresh process: `datasets` reads a
    stream in chunks of about 10 MB, so the two peaks stay within a few MB (reading whole, they differ by
    ~1.5 GB). One process reading both would add the allocator's leftovers from the first read (10-25 MB)."""
    line = json.dumps({"instruction": "Name a fish.", "input": "x" * 500, "output": "Cod, matey!"}) + "\n"
    paths = []
    for megabytes in (40, 160):
        paths.append(tmp_path / f"big{megabytes}.jsonl")
        with open(paths[-1], "w") as f:
            for _ in range(megabytes):
                f.write(line * (2 ** 20 // len(line)))
    def read_200(path):
        out = subprocess.run([sys.executable, "-c", _READ_SOME, str(assets / "tokenizer.model"), str(path)],
                             capture_output=True, text=True, check=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""})
        return map(int, out.stdout.split())

    (n_small, peak_small), (n_big, peak_big) = map(read_200, paths)
    assert n_small == n_big == 200
    assert peak_big - peak_small < 20, (peak_small, peak_big)
