"""The streaming safetensors writer: the same bytes as the safetensors library, one tensor alive at a time."""

import gc
import weakref

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from torchtune_lite.checkpointing._safetensors_io import TensorToWrite, write_safetensors, write_sharded


def _mixed_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "model.layers.10.w": torch.randn(3, 5, generator=g).to(torch.bfloat16),
        "model.layers.2.w": torch.randn(7, generator=g).to(torch.bfloat16),
        "scale": torch.tensor(2.5, dtype=torch.bfloat16),  # 0-dim
        "empty": torch.zeros(0, 4),
        "codes": torch.randint(0, 255, (9,), dtype=torch.uint8, generator=g),
        "scalers": torch.randint(-128, 127, (3, 3), dtype=torch.int8, generator=g),
        "half": torch.randn(2, 3, generator=g).half(),
        "f32": torch.randn(4, 1, generator=g),
        "f64": torch.randn(2, generator=g).double(),
        "ids": torch.arange(5),
        "i32": torch.arange(3, dtype=torch.int32),
        "mask": torch.tensor([True, False, True]),
        "ünïcode": torch.ones(1),
    }


def _to_write(tensors: dict[str, torch.Tensor]) -> list[TensorToWrite]:
    return [TensorToWrite(k, tuple(v.shape), v.dtype, lambda v=v: v.clone()) for k, v in tensors.items()]


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}, {"b": "2", "a": "1"}], ids=["default", "pt", "two-keys"])
def test_bytes_equal_safetensors_save_file(tmp_path, metadata):
    tensors = _mixed_tensors()
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    write_safetensors(ours, _to_write(tensors), metadata=metadata)
    if metadata is not None and len(metadata) > 1:
        # the library orders several metadata entries by Rust's randomised HashMap: compare the readback only
        with safe_open(str(ours), framework="pt") as f:
            assert f.metadata() == metadata
    else:
        save_file(tensors, str(theirs), metadata={"format": "pt"})
        assert ours.read_bytes() == theirs.read_bytes()
    with safe_open(str(ours), framework="pt") as f:
        assert set(f.keys()) == set(tensors)
        for key, value in tensors.items():
            got = f.get_tensor(key)
            assert got.dtype == value.dtype and got.shape == value.shape and torch.equal(got, value)


def test_empty_file_matches_save_file(tmp_path):
    write_safetensors(tmp_path / "ours.safetensors", [])
    save_file({}, str(tmp_path / "theirs.safetensors"), metadata={"format": "pt"})
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "theirs.safetensors").read_bytes()


def test_at_most_the_tensor_being_written_is_alive_while_the_next_is_produced(tmp_path):
    alive: list[weakref.ref] = []

    def produce(i: int) -> torch.Tensor:
        gc.collect()
        assert all(ref() is None for ref in alive[:-1]), "a tensor before the one being written is still referenced"
        value = torch.full((64, 64), float(i))
        alive.append(weakref.ref(value))
        return value

    tensors = [TensorToWrite(f"t{i}", (64, 64), torch.float32, lambda i=i: produce(i)) for i in range(4)]
    write_safetensors(tmp_path / "m.safetensors", tensors)
    assert len(alive) == 4
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        assert [float(f.get_tensor(f"t{i}")[0, 0]) for i in range(4)] == [0.0, 1.0, 2.0, 3.0]


def test_a_producer_that_breaks_its_declaration_leaves_no_file(tmp_path):
    tensors = [TensorToWrite("a", (2, 2), torch.float32, lambda: torch.zeros(2, 3))]
    with pytest.raises(ValueError, match="a: produced torch.float32 \\[2, 3\\] but was declared"):
        write_safetensors(tmp_path / "m.safetensors", tensors)
    assert list(tmp_path.iterdir()) == []


def test_a_producer_error_after_the_first_tensor_leaves_no_file(tmp_path):
    def broken() -> torch.Tensor:
        raise OSError("disk vanished")

    tensors = [TensorToWrite("a", (2,), torch.float32, lambda: torch.zeros(2)), TensorToWrite("b", (2,), torch.float32, broken)]
    with pytest.raises(OSError, match="disk vanished"):
        write_safetensors(tmp_path / "m.safetensors", tensors)
    assert list(tmp_path.iterdir()) == []


def test_sharded_files_read_back_with_their_index(tmp_path):
    import json

    tensors = {f"w{i}": torch.full((10,), float(i)) for i in range(5)}  # 40 bytes each
    names = write_sharded(tmp_path, _to_write(tensors), max_shard_bytes=100)
    assert names == [f"model-0000{k}-of-00003.safetensors" for k in (1, 2, 3)] + ["model.safetensors.index.json"]
    index = json.loads((tmp_path / names[-1]).read_text())
    assert index["metadata"]["total_size"] == 200
    for key, value in tensors.items():
        with safe_open(str(tmp_path / index["weight_map"][key]), framework="pt") as f:
            assert torch.equal(f.get_tensor(key), value)


def test_reader_reads_what_the_safetensors_library_wrote(tmp_path):
    from torchtune_lite.checkpointing._safetensors_io import SafetensorsReader, iter_safetensors

    tensors = _mixed_tensors()
    save_file(tensors, str(tmp_path / "m.safetensors"), metadata={"format": "pt", "note": "x"})
    with SafetensorsReader(tmp_path / "m.safetensors") as f:
        assert f.metadata == {"format": "pt", "note": "x"}
    got = dict(iter_safetensors(tmp_path / "m.safetensors"))
    assert got.keys() == tensors.keys()
    for key, value in tensors.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key


@pytest.mark.parametrize("cut", [4, 40, -1], ids=["in-length", "in-header", "in-data"])
def test_reader_refuses_a_truncated_file(tmp_path, cut):
    from torchtune_lite.checkpointing import CheckpointFormatError
    from torchtune_lite.checkpointing._safetensors_io import iter_safetensors

    path = tmp_path / "m.safetensors"
    save_file(_mixed_tensors(), str(path))
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(CheckpointFormatError, match="m.safetensors is not a readable safetensors file.*truncated or corrupt"):
        list(iter_safetensors(path))
