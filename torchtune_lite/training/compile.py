"""torch.compile per layer: short compile times (one graph reused by every identical layer) and unchanged keys.

`nn.Module.compile()` compiles in place (no `_orig_mod.` key prefix, unlike `torch.compile(model)`).
Compilation is lazy: nothing is compiled until the first forward, so these functions cannot time it.
The cost shows up in the first training step; `compile_seconds` reads it off the step times.
"""

import importlib.util
import os
import shutil
import statistics
from typing import Optional, Union

import torch
from torch import nn


# compile=auto turns compile on from this many optimizer steps. Per-layer compile costs the first step
# 15-30 s on a cold inductor cache (5-10 s warm) on 2 CPU cores and saved 0.13-0.14 s per step of the
# 58M model at 4 x 256 tokens in fp32 (0.91x the eager step), so it is repaid after 150-200 steps.
COMPILE_AUTO_MIN_STEPS = 150


def _has_cpu_compiler() -> bool:
    return bool(os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++"))


def _check_cpu_compiler() -> None:
    # Inductor's CPU backend writes C++ and builds it with the system compiler at the first step;
    # failing here gives a one-line message instead of a long traceback mid-training.
    if not _has_cpu_compiler():
        raise RuntimeError("compile=True on CPU needs a C++ compiler (g++ or clang++): install one or set compile=False")


def resolve_compile(setting: Union[bool, str], total_steps: int, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether to compile: `setting` itself if a bool; for "auto", True when the run has at least
    COMPILE_AUTO_MIN_STEPS optimizer steps (so the first step's compile time is repaid), the device's
    compiler backend is present (a C++ compiler on CPU, triton on GPU), and compiling pays there.

    It does not pay for bf16 on CPU: the eager step's C kernels (RMSNorm, RoPE, SwiGLU, attention's
    softmax, the loss) already fuse what inductor would: compiled 58M steps took 0.95-0.98x the eager step at
    2 threads (repaid after 300-800 steps), 1.14x at 1, and a 7B step was no faster, after 10-100 s of compiling."""
    if setting != "auto":
        return bool(setting)
    if total_steps < COMPILE_AUTO_MIN_STEPS:
        return False
    if torch.device(device).type == "cpu":
        return dtype != torch.bfloat16 and _has_cpu_compiler()
    return importlib.util.find_spec("triton") is not None


def compile_model(model: nn.Module, layer_types: tuple[type, ...], device: Optional[torch.device] = None) -> int:
    """Compiles each matching layer in place with `nn.Module.compile`; returns how many.

    Apply activation checkpointing first: the compiled call then traces the checkpointed forward.
    `device` is where the model will run, if its parameters are not there yet (e.g. built on meta).
    Raises ValueError if no layer matches (compile=True would otherwise silently do nothing).
    """
    layer_types = layer_types if isinstance(layer_types, tuple) else (layer_types,)
    layers = [m for m in model.modules() if isinstance(m, layer_types)]
    if not layers:
        names = ", ".join(t.__name__ for t in layer_types)
        raise ValueError(f"compile found no {names} in {type(model).__name__}: pass the model's layer class or set compile=False")
    if (device is not None and torch.device(device).type == "cpu") or any(p.device.type == "cpu" for p in model.parameters()):
        _check_cpu_compiler()
    for layer in layers:
        layer.compile()
    return len(layers)


def compile_loss(loss: nn.Module) -> nn.Module:
    """Compiles the loss module in place (fuses the upcast, log-softmax and gather per chunk); returns it."""
    loss.compile()
    return loss


def uncompiled():
    """Context in which compiled layers run their eager forward: for no_grad passes beside training
    (validation, the generation after training). Their graphs would be new ones (no_grad, other lengths, a
    smaller last batch), about 20 s each to compile on the tiny model, for a pass too short to repay it."""
    return torch.compiler.set_stance("force_eager")


def compile_seconds(step_seconds: list[float]) -> Optional[float]:
    """Time the first step spent compiling: its wall time minus the median of the later steps'.

    None with fewer than two steps (nothing to compare against).
    """
    if len(step_seconds) < 2:
        return None
    return max(0.0, step_seconds[0] - statistics.median(step_seconds[1:]))
