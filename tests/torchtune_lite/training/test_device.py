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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_uses_local_rank(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert get_device("auto") == torch.device("cuda:0")
    assert torch.cuda.current_device() == 0
