"""Activation checkpointing that leaves parameter names and state-dict keys untouched.

torch's `checkpoint_wrapper` inserts a wrapper module, so every key gains a `_checkpoint_wrapped_module.`
prefix that checkpointers, optimizer states and LoRA key filters then have to strip. Here the layer keeps
its class and its place in the tree; only its instance `forward` is replaced by a checkpointed call of the
class's forward.
"""

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class _CheckpointedForward:
    """Stored as `module.forward`. It holds the module itself (not a bound method or closure), so
    `copy.deepcopy(model)` gives the copy a forward that runs the copy, not the original."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        forward = type(self.module).forward
        if not torch.is_grad_enabled():
            return forward(self.module, *args, **kwargs)  # nothing is saved for backward: no need to recompute
        return checkpoint(forward, self.module, *args, use_reentrant=False, **kwargs)


def is_activation_checkpointed(module: nn.Module) -> bool:
    return isinstance(module.__dict__.get("forward"), _CheckpointedForward)


def apply_activation_checkpointing(model: nn.Module, layer_types: tuple[type, ...]) -> int:
    """Recompute each matching layer's activations in backward instead of storing them.

    Trades about one extra forward per layer for keeping only each layer's input. Layers nested inside an
    already-checkpointed layer are left alone (the outer recomputation covers them); applying twice is a
    no-op. Returns how many layers are checkpointed; raises ValueError if none match.
    """
    layer_types = layer_types if isinstance(layer_types, tuple) else (layer_types,)
    count = 0
    covered: set[int] = set()
    for module in model.modules():
        if id(module) in covered or not isinstance(module, layer_types):
            continue
        if not is_activation_checkpointed(module):
            module.forward = _CheckpointedForward(module)
        covered.update(id(m) for m in module.modules())
        count += 1
    if count == 0:
        names = ", ".join(t.__name__ for t in layer_types)
        raise ValueError(
            f"activation checkpointing found no {names} in {type(model).__name__}: "
            "pass the model's layer class or set enable_activation_checkpointing=False"
        )
    return count
