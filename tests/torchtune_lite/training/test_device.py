import pytest
import torch

from torchtune_lite.training.device import get_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")


@no_cuda
def test_auto_is_cpu_without_cuda():
    assert get_device() == torch.device("cpu")
    assert get_device("auto") == torch.device("cpu")
    assert get_device(" CPU ") == torch.device("cpu")


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_a_one_line_error(name):
    with pytest.raises(ValueError, match="CUDA is not available here: use device=cpu") as err:
        get_device(name)
    assert "\n" not in str(err.value)


def test_unknown_device_is_an_error():
    with pytest.raises(ValueError, match="not supported: use auto, cpu, cuda"):
        get_device("tpu")


def _fake_gpus(monkeypatch, count: int) -> list:
    """`count` CUDA devices without CUDA; returns the devices made current, in order."""
    current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    return current


@pytest.mark.parametrize("name", ["auto", "cuda"])
def test_cuda_takes_the_local_ranks_gpu_and_makes_it_current(monkeypatch, name):
    current = _fake_gpus(monkeypatch, 4)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert get_device(name) == torch.device("cuda:3")
    assert current == [torch.device("cuda:3")]


def test_cuda_index_beyond_the_visible_gpus_is_a_one_line_error(monkeypatch):
    _fake_gpus(monkeypatch, 2)
    with pytest.raises(ValueError, match=r"device=cuda:2 but only 2 CUDA device\(s\) are visible: use a lower index"):
        get_device("cuda:2")
    assert get_device("cpu") == torch.device("cpu")  # cpu stays cpu on a GPU host
