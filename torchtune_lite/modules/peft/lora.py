"""LoRA: the linear layer with an optionally NF4-quantized frozen base (QLoRA), and the LoRA facts
everything else asks for: the scale alpha / rank, merging into the base, which state-dict keys are
adapter weights, and the adapter's config (PEFT's ``adapter_config.json``)."""

import math
import re
import warnings
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from torchtune_lite._torchao import NF4Tensor
from torchtune_lite.quantization import dequantize_nf4, linear_nf4, nf4_block_sizes, quantize_nf4

# Names of the two adapter matrices inside a LoRA'd linear `P`: `P.lora_a.weight`, `P.lora_b.weight`.
ADAPTER_MATRICES = ("lora_a", "lora_b")


def lora_scale(rank: int, alpha: float) -> float:
    """The factor on the adapter's output: alpha / rank (the LoRA paper's, and PEFT's default)."""
    return alpha / rank


def is_adapter_key(key: str) -> bool:
    """Whether state-dict key ``key`` is a LoRA adapter weight (``P.lora_a.weight``, ``P.lora_b.weight``)."""
    parts = key.split(".")
    return len(parts) >= 2 and parts[-2] in ADAPTER_MATRICES


def split_adapter_key(key: str) -> tuple[str, str]:
    """``P.lora_a.weight`` -> (``P``, "a"); ValueError for a key that is not an adapter weight."""
    m = re.match(r"^(.+)\.lora_([ab])\.weight$", key)
    if not m:
        raise ValueError(f"adapter key {key!r} is not a LoRA weight (expected '<module>.lora_a.weight' or '.lora_b.weight')")
    return m.group(1), m.group(2)


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
        self.scaling = lora_scale(rank, alpha)

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

        self.disabled = False  # True inside `adapters_disabled`: the layer is its frozen base alone
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
        return [f"{name}.weight" for name in ADAPTER_MATRICES]

    def adapter_config(self) -> dict[str, Any]:
        """This layer's settings in PEFT's terms: ``r``, ``lora_alpha``, ``lora_dropout``."""
        dropout = self.dropout.p if isinstance(self.dropout, nn.Dropout) else 0.0
        return {"r": self.rank, "lora_alpha": self.alpha, "lora_dropout": dropout}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., in_dim] -> [..., out_dim]."""
        if self.disabled:
            return self._base(x)
        # The adapter first (scaled on its rank-wide side, a pass over [tokens, rank]), then the base matmul
        # adds it inside its own GEMM. The base matmul is then the layer's last op and, on an NF4 base, saves
        # nothing: activation checkpointing's recompute, which stops once every saved tensor is back, skips
        # it in a checkpointed block's last projection (a Llama MLP's down_proj: 1/13 of a 7B step's GEMMs).
        up = self.lora_b(self.lora_a(self.dropout(x)) * self.scaling)
        return self._base(x, up)

    def _base(self, x: torch.Tensor, add: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The frozen base layer's output for x, plus `add` when given."""
        if self.quantize_base:
            out = linear_nf4(x, self.weight, add)
        elif add is None:
            return F.linear(x, self.weight, self.bias)
        else:
            out = torch.addmm(add.reshape(-1, self.out_dim), x.reshape(-1, self.in_dim), self.weight.t()).view(add.shape)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, out_dim={self.out_dim}, rank={self.rank}, alpha={self.alpha}, "
            f"quantize_base={self.quantize_base}"
        )


@contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """Runs `model` as its base inside the block: every LoRALinear skips its adapter (DPO's reference model
    is the policy with its adapters off, so no second copy of the weights is held)."""
    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    for layer in layers:
        layer.disabled = True
    try:
        yield
    finally:
        for layer in layers:
            layer.disabled = False


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


# Rows merged per block: the block's fp32 copy (128 x 11008 x 4 bytes = 5.6 MB for a 7B MLP weight) stays in cache.
_MERGE_ROWS = 128


def merge_lora_weight(base: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, scale: float) -> torch.Tensor:
    """``base + scale * lora_b @ lora_a`` as a new tensor of the base's dtype and device (an NF4 base is dequantized).

    Each element is summed in fp32 and rounded once. Rows go a block at a time, so no fp32 copy of the whole
    weight is ever made: about 4x faster than one full-size fp32 ``addmm`` on a CPU, with the same result.
    """
    merged = dequantize_nf4(base) if isinstance(base, NF4Tensor) else base.detach().clone()
    a = lora_a.detach().to(merged.device, torch.float32)
    b = lora_b.detach().to(merged.device, torch.float32)
    for start in range(0, merged.shape[0], _MERGE_ROWS):
        rows = merged[start : start + _MERGE_ROWS]
        rows.copy_(torch.addmm(rows.float(), b[start : start + _MERGE_ROWS], a, alpha=scale))
    return merged


def model_adapter_config(model: nn.Module) -> dict[str, Any]:
    """The adapter config of ``model``'s LoRA layers (``r``, ``lora_alpha``, ``lora_dropout``, and
    ``target_modules`` in our module names), read from the layers themselves; ValueError if they disagree."""
    settings, targets = [], set()
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            settings.append(module.adapter_config())
            targets.add(name.rsplit(".", 1)[-1])
    if not settings:
        raise ValueError("the model has no LoRA layers, so it has no adapter config: use a lora_ or qlora_ model component")
    distinct = {tuple(sorted(c.items())) for c in settings}
    if len(distinct) > 1:
        raise ValueError(f"the model's LoRA layers differ in their settings {sorted(distinct)}: PEFT's adapter_config holds one")
    return {**settings[0], "target_modules": sorted(targets)}


def complete_adapter_config(adapter: Mapping[str, torch.Tensor], config: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """``config`` (needs ``lora_alpha``) with ``r``, ``target_modules`` and ``lora_dropout`` filled in from
    the adapter weights ``adapter`` (our keys) where absent."""
    config = dict(config or {})
    if "lora_alpha" not in config:
        raise ValueError(
            "the adapter config has no lora_alpha: pass the model's in state_dict['adapter_config'] when saving, "
            "or load the adapter with the adapter_config.json saved beside it"
        )
    ranks = {v.shape[0] for k, v in adapter.items() if k.endswith("lora_a.weight")}
    if len(ranks) != 1:
        raise ValueError(f"adapter lora_a weights have ranks {sorted(ranks)}: every LoRA layer must share one rank")
    config.setdefault("r", ranks.pop())
    config.setdefault("target_modules", sorted({split_adapter_key(k)[0].rsplit(".", 1)[-1] for k in adapter}))
    config.setdefault("lora_dropout", 0.0)
    return config


def adapter_scale(config: Mapping[str, Any]) -> float:
    """The merge scale of an adapter config (ours or PEFT's ``adapter_config.json``)."""
    return lora_scale(int(config["r"]), float(config["lora_alpha"]))


def peft_adapter_config(config: Mapping[str, Any], hf_module_names: Mapping[str, str], base_model: str) -> dict[str, Any]:
    """PEFT's ``adapter_config.json`` for our (complete) adapter ``config``; ``hf_module_names`` maps our
    module names to the Hugging Face ones PEFT's ``target_modules`` uses."""
    known: Iterable[str] = {*hf_module_names, *hf_module_names.values()}
    unknown = [m for m in config["target_modules"] if m not in known]
    if unknown:
        raise ValueError(f"adapter target_modules {unknown} are not decoder linear layers: use some of {list(hf_module_names)}")
    return {
        "base_model_name_or_path": str(config.get("base_model_name_or_path", base_model)),
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": int(config["r"]),
        "lora_alpha": float(config["lora_alpha"]),
        "lora_dropout": float(config["lora_dropout"]),
        "target_modules": sorted({hf_module_names.get(m, m) for m in config["target_modules"]}),
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "use_dora": bool(config.get("use_dora", False)),
    }
