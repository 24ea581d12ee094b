"""LoRA linear layer with an optionally NF4-quantized frozen base (QLoRA)."""

import math
import warnings
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from torchtune_lite._torchao import NF4Tensor
from torchtune_lite.quantization import linear_nf4, nf4_block_sizes, quantize_nf4


class LoRALinear(nn.Module):
    """`base(x) + (alpha / rank) * lora_b(lora_a(dropout(x)))` with a frozen base and trainable adapters.

    The frozen base is held directly as `weight: [out_dim, in_dim]` (and `bias: [out_dim]`), so a LoRA'd linear
    at `P` has the plain linear's key `P.weight` plus `P.lora_a.weight: [rank, in_dim]` and
    `P.lora_b.weight: [out_dim, rank]`. `lora_b` starts at zero, so a fresh LoRA model equals its base.

    With `quantize_base=True` the base weight is quantized to NF4 as soon as it is created (so building a
    QLoRA model never holds the full high-precision model) and the forward saves only the 4-bit weight for
    backward. A weight whose size fits no NF4 block size stays in high precision; then `quantize_base` is
    False afterwards and, if `warn_if_not_quantized`, a warning says so (builders turn this off and warn
    once for the whole model, naming the layers).

    Args:
        in_dim, out_dim: sizes of the linear.
        rank: LoRA rank r.
        alpha: LoRA scaling numerator; the update is scaled by alpha / rank.
        dropout: dropout on the adapter's input.
        use_bias: give the frozen base a bias.
        quantize_base: store the frozen base weight as an NF4Tensor.
        warn_if_not_quantized: warn when quantize_base was asked for but the shape fits no block size.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        use_bias: bool = False,
        quantize_base: bool = False,
        *,
        warn_if_not_quantized: bool = True,
    ) -> None:
        super().__init__()
        if rank <= 0:
            raise ValueError(f"LoRA rank must be a positive integer, got {rank}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"lora_dropout={dropout} is not a probability: use a value in [0, 1]")
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank

        base = nn.Linear(in_dim, out_dim, bias=use_bias)  # default dtype/device and nn.Linear's init
        weight = base.weight.detach()
        quantized = _try_quantize(weight) if quantize_base else None
        if quantize_base and quantized is None and warn_if_not_quantized:
            warnings.warn(
                f"LoRALinear({in_dim} -> {out_dim}): {weight.numel()} weights fit no NF4 block size; "
                f"keeping the base weight in {weight.dtype} (no QLoRA memory saving for this layer)",
                stacklevel=2,
            )
        self.quantize_base = quantized is not None
        self.weight = nn.Parameter(weight if quantized is None else quantized, requires_grad=False)
        self.bias = nn.Parameter(base.bias.detach(), requires_grad=False) if use_bias else None
        del base

        self.dropout = nn.Dropout(p=dropout) if dropout > 0.0 else nn.Identity()
        self.lora_a = nn.Linear(in_dim, rank, bias=False)
        self.lora_b = nn.Linear(rank, out_dim, bias=False)
        self.initialize_lora_parameters()
        if self.quantize_base:
            self.register_load_state_dict_pre_hook(_quantize_incoming_weight)

    def initialize_lora_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        """lora_a: Kaiming-uniform (nn.Linear's default); lora_b: zeros, so the adapter starts as a no-op."""
        if self.lora_a.weight.is_meta:
            return  # a meta-device model gets its values when it is materialized (see initial_adapter_state)
        with torch.no_grad():
            for name, value in self.initial_adapter_state(generator).items():
                self.get_parameter(name).copy_(value)

    def initial_adapter_state(self, generator: Optional[torch.Generator] = None) -> dict[str, torch.Tensor]:
        """Fresh full-size adapter values on CPU in fp32, drawn from `generator` (the global RNG if None).

        Recipes draw them from one seeded generator, module by module, so a run starts from the same
        adapters however the model is placed (one device, or sharded over ranks).
        """
        lora_a = torch.empty(self.rank, self.in_dim, dtype=torch.float32, device="cpu")
        nn.init.kaiming_uniform_(lora_a, a=math.sqrt(5), generator=generator)
        return {"lora_a.weight": lora_a, "lora_b.weight": torch.zeros(self.out_dim, self.rank)}

    def adapter_params(self) -> list[str]:
        """Names (relative to this module) of the trainable adapter parameters."""
        return ["lora_a.weight", "lora_b.weight"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., in_dim] -> [..., out_dim]."""
        if self.quantize_base:
            out = linear_nf4(x, self.weight)
            if self.bias is not None:
                out = out + self.bias
        else:
            out = F.linear(x, self.weight, self.bias)
        return out + self.scaling * self.lora_b(self.lora_a(self.dropout(x)))

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, out_dim={self.out_dim}, rank={self.rank}, alpha={self.alpha}, "
            f"quantize_base={self.quantize_base}"
        )


def _try_quantize(weight: torch.Tensor) -> Optional[NF4Tensor]:
    """NF4 copy of `weight: [out, in]` with block sizes that fit it, or None if none do."""
    block_sizes = nf4_block_sizes(weight.numel())
    if block_sizes is None:
        return None
    try:
        return quantize_nf4(weight, *block_sizes)
    except AssertionError:  # torchao's shape checks; never surface them raw, the caller warns instead
        return None


def _quantize_incoming_weight(module: LoRALinear, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    # Load-state-dict pre-hook: quantize a high-precision checkpoint weight with our (fast) quantizer and the
    # block sizes of the NF4 weight it replaces, so the copy into the NF4Tensor is a plain copy of its fields
    # (torchao's copy_ would otherwise re-quantize with its own, slower code).
    key = prefix + "weight"
    incoming = state_dict.get(key)
    current = module.weight
    if incoming is None or isinstance(incoming, NF4Tensor) or not isinstance(current, NF4Tensor):
        return
    if incoming.shape != current.shape:
        return  # load_state_dict reports the size mismatch itself
    state_dict[key] = quantize_nf4(
        incoming.to(device=current.device, dtype=current.dtype).contiguous(),
        current.block_size,
        current.scaler_block_size,
    )
