"""Which device a run uses."""

import os
from typing import Union

import torch


def get_device(device: Union[str, torch.device] = "auto") -> torch.device:
    """The device to train on.

    "auto" is the local rank's CUDA device when CUDA is available (`cuda:$LOCAL_RANK`, so each process of a
    `torchrun` job takes its own GPU), else CPU. "cuda" means the local rank's GPU too; "cuda:N" and "cpu"
    are taken as given. A CUDA device is also made current, so kernels and NCCL land on it.
    """
    name = str(device).strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device} but CUDA is not available here: use device=cpu or device=auto")
        if name == "cuda":
            name = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        result = torch.device(name)
        if result.index >= torch.cuda.device_count():
            raise ValueError(f"device={name} but only {torch.cuda.device_count()} CUDA device(s) are visible: use a lower index")
        torch.cuda.set_device(result)
        return result
    raise ValueError(f"device={device} is not supported: use auto, cpu, cuda or cuda:N")


def check_device_name(device: str) -> None:
    """Refuses a device name `get_device` would not understand (checked before anything is built; whether
    CUDA is there is left to `get_device`, since `tune validate` may run on another machine)."""
    name = str(device).strip().lower()
    if name not in ("auto", "cpu", "cuda") and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise ValueError(f"device={device} is not supported: use auto, cpu, cuda or cuda:N")
