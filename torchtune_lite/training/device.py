"""Which device a run uses."""

import os

import torch


def get_device(device: str = "auto") -> torch.device:
    """"auto" -> the local rank's CUDA device when CUDA is available, else CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device} but CUDA is not available here: use device=cpu or device=auto")
        if device == "cuda":
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    elif device != "cpu":
        raise ValueError(f"device={device} is not supported: use auto, cpu, cuda or cuda:N")
    return torch.device(device)
