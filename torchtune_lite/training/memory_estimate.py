"""How much memory a fine-tuning config will need, worked out before anything is allocated.

The model is built on the meta device (so a 70B config costs nothing), which gives the exact bytes of
every parameter, NF4 ones included. Activations come from one forward pass on meta tensors with a
saved-tensors hook that adds up, storage by storage, what autograd keeps for backward; with activation
checkpointing the same pass sees only each layer's input, and backward adds one layer's recomputation.

On CPU the measured figure is the process's peak resident set (`peak_rss_bytes`, not a delta over a baseline),
which also holds the Python/torch runtime and the data loading libraries (400-450 MB before any tensor: the
recipe takes its own resident set less the weights once data and model are loaded, `tune estimate` measures a
fresh interpreter that loads a small data file, `measure_runtime_baseline`), the
blocks glibc keeps after a step frees them (a fitted term: one more step's transient tensors), in bf16 the
GEMM kernels oneDNN compiles for every batch length and keeps, and on a sharded run's ranks gloo's and FSDP2's
own state (fitted); all are added, so the total compares with what the recipe prints as `rss peak` (see
benchmarks/memory_estimate.py for the figures). The fused loss pads its rows to a multiple of 64, so its GEMM
shapes stop changing once the batch lengths have been seen (before, tiny/pretrain in bf16 climbed about 17 MiB a
step: benchmarks/memory_loss_row_counts.py). On CUDA the measured figure is the allocator's peak, and none of
these is added.
"""

from __future__ import annotations

import functools
import math
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig
from torch.utils._python_dispatch import TorchDispatchMode  # no public API counts the ops of a meta-device step

from torchtune_lite import config
from torchtune_lite._torchao import NF4Tensor
from torchtune_lite.modules.peft import LoRALinear, is_adapter_key
from torchtune_lite.quantization import nf4_block_sizes
from torchtune_lite.modules.transformer import TransformerDecoderLayer
from torchtune_lite.training.activations import apply_activation_checkpointing
from torchtune_lite.training.loss import ChunkedCrossEntropyLoss, plain_linear_weight
from torchtune_lite.training.model_from_checkpoint import build_on_meta
from torchtune_lite.training.precision import get_dtype

_MIB = 1024**2
_TINY_DATA = Path(__file__).resolve().parents[1] / "assets" / "tiny" / "instruct_train.json"
_GIB = 1024**3
# Optimizer states per trainable parameter, each in the parameter's dtype (torch creates them with zeros_like).
_STATES_PER_PARAM = {"AdamW": 2, "Adam": 2, "SGD": 1}
# Live activation gradients while backward runs through one layer, relative to that layer's saved
# activations (an assumption: about as many gradient bytes as the layer saved).
_BACKWARD_WORKSPACE = 1.0
# bf16 matmuls on CPU go through oneDNN, which keeps a compiled kernel (and its scratch) for every GEMM shape it
# has run and never frees them: about 1 MiB per (M, K, N) (1.0 MiB at 256x256, 1.9 MiB at 4096x4096, measured with
# torch 2.13 on AVX512-BF16/AMX). Each new batch length brings a new M for every GEMM of the step. fp32 (MKL) keeps none.
_ONEDNN_BYTES_PER_GEMM = 1 * 2**20
_GEMM_OPS = {"mm", "addmm", "bmm", "baddbmm"}
# What a CPU rank of a sharded run holds beyond the same run on one device, apart from its shards: gloo's
# buffers and threads, FSDP2's and DTensor's per-module state and caches. Fitted: the 2-rank tiny runs of
# benchmarks/memory_estimate.py peaked 10-70 MiB per rank above the one-device runs.
_CPU_SHARDED_RUNTIME_BYTES = 50 * 2**20


@dataclass
class MemoryEstimate:
    """Bytes per part of a run's peak memory. `total` is their sum."""

    device_type: str
    dtype: torch.dtype
    batch_size: int
    seq_len: int
    activation_checkpointing: bool
    parts: dict[str, int] = field(default_factory=dict)
    rows_per_sample: int = 1  # 2 for preference pairs (chosen and rejected rows)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def table(self) -> str:
        """The breakdown as an aligned text table in MiB and GiB."""
        batch = f"{self.batch_size}" if self.rows_per_sample == 1 else f"{self.batch_size} pairs ({self.batch_size * self.rows_per_sample} rows)"
        header = (
            f"Memory estimate: {self.device_type}, {str(self.dtype).removeprefix('torch.')}, batch {batch} x "
            f"{self.seq_len} tokens, activation checkpointing {'on' if self.activation_checkpointing else 'off'}"
        )
        width = max(len(name) for name in [*self.parts, "total"])
        rows = [f"  {name:<{width}}  {size / _MIB:>12,.1f} MiB  {size / _GIB:>8.2f} GiB" for name, size in self.parts.items()]
        rule = "  " + "-" * (width + 32)
        rows += [rule, f"  {'total':<{width}}  {self.total / _MIB:>12,.1f} MiB  {self.total / _GIB:>8.2f} GiB"]
        return "\n".join([header, *rows])

    def compare(self, measured: dict[str, float]) -> str:
        """One line setting the estimate beside a measured peak from `get_memory_stats` (GiB figures)."""
        key = "rss_peak" if self.device_type == "cpu" else "peak_memory_active"
        if key not in measured:
            return f"memory estimate {self.total / _GIB:.2f} GiB (no measured {key})"
        peak = measured[key]
        return f"memory estimate {self.total / _GIB:.2f} GiB vs measured {key} {peak:.2f} GiB ({(self.total / _GIB - peak) / peak:+.0%})"


def estimate_memory(
    cfg: DictConfig,
    *,
    seq_len: Optional[int] = None,
    runtime_baseline: Optional[int] = None,
    world_size: int = 1,
    batch_shapes: Optional[float] = None,
    rows_per_sample: Optional[int] = None,
    resident_with_model: Optional[int] = None,
) -> MemoryEstimate:
    """The peak memory a fine-tuning run of `cfg` (a resolved recipe config) should reach, part by part.

    `seq_len` is the padded batch length (default: the tokenizer's `max_seq_len`, the longest a batch can
    be; pass `longest_sample(cfg)` for unpacked data shorter than that). `runtime_baseline` is the CPU
    runtime's resident bytes (default: `measure_runtime_baseline()`); ignored on CUDA. With `world_size` > 1
    the figure is one rank's of a sharded run: weights, gradients and optimizer states are split over the
    ranks (FSDP2), and the whole weights of two layers (the one computing and the one prefetched) are
    gathered at a time; each rank runs its own `batch_size`. `batch_shapes` is how many distinct batch lengths
    the run meets (`run_batch_shapes`; default one for packed data, else two): in bf16 on CPU each one keeps its
    own compiled GEMM kernels, and on CPU changing lengths keep glibc from reusing a step's freed blocks.
    `resident_with_model`: a running recipe's resident bytes once its data are loaded and its model built; the
    runtime baseline is then this less the weights the estimate counts (data loading alone, `datasets` and
    pyarrow with their tables, holds about 100 MB on the tiny configs, which a baseline taken before it misses).
    `rows_per_sample`: rows one sample puts in a batch (default: 2 for a preference loss's pairs, a chosen and
    a rejected sequence, each padded to the batch's length; else 1).
    """
    if batch_shapes is None:
        batch_shapes = 1.0 if cfg.dataset.get("packed", False) else 2.0
    device_type = _device_type(str(cfg.get("device", "auto")))
    dtype = _dtype(cfg.get("dtype", "auto"), device_type)
    preference = is_preference_config(cfg)
    rows_per_sample = rows_per_sample or (2 if preference else 1)
    batch_size = int(cfg.get("batch_size", 1))
    rows = rows_per_sample * batch_size  # what one forward sees
    if seq_len is None:
        seq_len = _max_seq_len(cfg)
    ac = bool(cfg.get("enable_activation_checkpointing", False))

    model = build_meta_model(cfg, dtype)
    gemms = len(gemm_shapes(model, rows, seq_len)) if device_type == "cpu" and dtype in (torch.bfloat16, torch.float16) else 0
    weights = weight_bytes(model)
    trainable = weights["adapters"] if weights["adapters"] else weights["high-precision weights"]
    states = _STATES_PER_PARAM.get(str(cfg.optimizer._component_).rsplit(".", 1)[-1], 2)

    shards = max(int(world_size), 1)
    parts = {
        "NF4 weights": weights["NF4 weights"] // shards,
        "high-precision weights": weights["high-precision weights"] // shards,
        "adapters": weights["adapters"] // shards,
        "gradients": trainable // shards,
        "optimizer states": states * trainable // shards,
        "activations": activation_bytes(model, rows, seq_len, checkpointed=ac),
        # preference losses score one row at a time (completion_logps), SFT the whole batch in chunks
        "loss and dequant buffers": _working_buffers(cfg, model, 1 if preference else rows, seq_len, dtype),
    }
    if preference:
        # The reference is the policy's own weights (training/preference_step.py ReferencePolicy): with the
        # adapters switched off it holds nothing more; from a start adapter it keeps one copy of the adapters
        # (sharded like them). Its forward runs without gradients before the policy's, so it saves nothing.
        if cfg.get("start_adapter"):
            parts["reference: start adapter copy"] = weights["adapters"] // shards
        else:
            parts["reference: base, adapters off"] = 0
    if shards > 1:
        parts["gathered layers (FSDP)"] = 2 * _largest_layer_bytes(model)
    if device_type == "cpu":
        # When batch lengths change from step to step, glibc keeps the freed blocks of one step's transient
        # tensors resident while the next step allocates its own of other sizes: about one more step's
        # activations and working buffers (fitted on the tiny runs of benchmarks/memory_estimate.py). With one
        # length (packed data) each step reuses the previous step's blocks in place, and nothing is added.
        varying = min(max(batch_shapes - 1.0, 0.0), 1.0)
        parts["CPU allocator retention"] = int(varying * (parts["activations"] + parts["loss and dequant buffers"]))
        if shards > 1:
            parts["FSDP2 and gloo runtime (fitted)"] = _CPU_SHARDED_RUNTIME_BYTES
        if gemms:
            parts["oneDNN kernels per batch length"] = int(gemms * max(batch_shapes, 1.0) * _ONEDNN_BYTES_PER_GEMM)
        if resident_with_model is not None:
            held = sum(parts[name] for name in ("NF4 weights", "high-precision weights", "adapters"))
            runtime_baseline = max(resident_with_model - held, 0)
        parts["runtime baseline (measured)"] = measure_runtime_baseline() if runtime_baseline is None else runtime_baseline
    return MemoryEstimate(device_type, dtype, batch_size, seq_len, ac, parts, rows_per_sample)


def is_preference_config(cfg: DictConfig) -> bool:
    """Whether `cfg` trains on preference pairs (its loss is a `PreferenceLoss`: DPO, IPO or SimPO)."""
    from torchtune_lite.training.preference_loss import PreferenceLoss

    component = (cfg.get("loss") or {}).get("_component_")
    loss_class = config.import_component(component) if component else None
    return isinstance(loss_class, type) and issubclass(loss_class, PreferenceLoss)


def build_meta_model(cfg: DictConfig, dtype: torch.dtype) -> torch.nn.Module:
    """The config's model on the meta device in `dtype`, trainable parameters marked as the recipe marks them
    (only the LoRA adapters when there are any, else everything).

    A QLoRA component is built with `quantize_base=False` (quantizing, even on meta, takes seconds per 7B
    model); `weight_bytes` then counts the NF4 size of each base weight that would have been quantized,
    which `model.nf4_requested` records."""
    nf4 = _requests_nf4(cfg.model)
    model = build_on_meta(cfg.model, dtype, **({"quantize_base": False} if nf4 else {}))
    model.nf4_requested = nf4
    has_lora = any(isinstance(m, LoRALinear) for m in model.modules())
    for name, param in model.named_parameters():
        param.requires_grad_(not has_lora or is_adapter_key(name))
    return model


def _largest_layer_bytes(model: torch.nn.Module) -> int:
    """Bytes of the largest decoder layer's parameters as stored (NF4 weights at their NF4 size)."""
    layers = [m for m in model.modules() if isinstance(m, TransformerDecoderLayer)]
    nf4 = getattr(model, "nf4_requested", False)
    return max((sum(weight_bytes(layer, nf4=nf4).values()) for layer in layers), default=0)


def _requests_nf4(model_cfg: DictConfig) -> bool:
    if "quantize_base" in model_cfg:
        return bool(model_cfg.quantize_base)
    builder = config.import_component(model_cfg._component_)
    return bool(getattr(builder, "keywords", {}).get("quantize_base", False))  # e.g. a functools.partial


def gemm_shapes(model: torch.nn.Module, batch_size: int, seq_len: int) -> set[tuple]:
    """The distinct matrix multiplications (op and operand shapes) of one training step of `[batch_size,
    seq_len]` tokens, forward and backward, run on the meta device: what a CPU bf16 step compiles kernels for."""
    shapes: set[tuple] = set()

    class RecordGemms(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.__name__.split(".")[0] in _GEMM_OPS:
                shapes.add((func.__name__, *(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))))
            return func(*args, **(kwargs or {}))

    tokens = torch.zeros(batch_size, seq_len, dtype=torch.long, device="meta")
    with RecordGemms():
        logits = model.output(model(tokens, return_hidden=True))
        if logits.requires_grad:
            logits.float().sum().backward()
    for param in model.parameters():
        param.grad = None
    return shapes


def batch_shapes_seen(lengths: list[int], batch_size: int, num_batches: int) -> float:
    """How many distinct padded lengths `num_batches` batches of `batch_size` samples, drawn at random from
    samples of `lengths` tokens, are expected to have (a batch is as long as its longest sample)."""
    counts, seen, below, expected = Counter(lengths), 0, 0.0, 0.0
    for length in sorted(counts):
        seen += counts[length]
        upto = seen / len(lengths)
        longest_is_this = upto**batch_size - below**batch_size  # P(a batch's longest sample has `length` tokens)
        expected += 1 - (1 - longest_is_this) ** num_batches
        below = upto
    return expected


def activation_bytes(model: torch.nn.Module, batch_size: int, seq_len: int, *, checkpointed: bool) -> int:
    """Bytes autograd keeps for backward after one forward of `[batch_size, seq_len]` tokens, plus, for
    backward, the live activation gradients (and with `checkpointed`, one layer's recomputed activations).
    Applies activation checkpointing to `model` when `checkpointed`."""
    saved = _saved_by_forward(model, batch_size, seq_len)
    num_layers = sum(isinstance(m, TransformerDecoderLayer) for m in model.modules())
    if not checkpointed:
        return int(saved * (1 + _BACKWARD_WORKSPACE / max(num_layers, 1)))
    apply_activation_checkpointing(model, (TransformerDecoderLayer,))
    saved_with_ac = _saved_by_forward(model, batch_size, seq_len)
    per_layer = (saved - saved_with_ac) / max(num_layers, 1)
    return int(saved_with_ac + per_layer * (1 + _BACKWARD_WORKSPACE))


def _saved_by_forward(model: torch.nn.Module, batch_size: int, seq_len: int) -> int:
    """Distinct storages saved for backward by one forward on meta tensors (shared storages count once)."""
    sizes: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if not isinstance(tensor, NF4Tensor) and not isinstance(tensor, torch.nn.Parameter):
            storage = tensor.untyped_storage()
            sizes[storage._cdata] = storage.nbytes()  # _cdata: a storage's identity; meta tensors have no data_ptr
        return tensor

    tokens = torch.zeros(batch_size, seq_len, dtype=torch.long, device="meta")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(tokens, return_hidden=True)
    params = {p.untyped_storage()._cdata for p in model.parameters() if not isinstance(p, NF4Tensor)}
    return sum(size for key, size in sizes.items() if key not in params)


def weight_bytes(model: torch.nn.Module, nf4: Optional[bool] = None) -> dict[str, int]:
    """Bytes of the model's (or one layer's) NF4 weights, other frozen or trained high-precision weights, and
    LoRA adapters. `nf4`: whether the LoRA base weights count at NF4 size (default: `model.nf4_requested`)."""
    out = {"NF4 weights": 0, "high-precision weights": 0, "adapters": 0}
    nf4 = getattr(model, "nf4_requested", False) if nf4 is None else nf4
    nf4_weights = {id(m.weight) for m in model.modules() if isinstance(m, LoRALinear) and nf4}
    for name, param in model.named_parameters():
        if isinstance(param, NF4Tensor):
            inner, _ = param.__tensor_flatten__()
            out["NF4 weights"] += sum(getattr(param, n).nbytes for n in inner)
        elif id(param) in nf4_weights and nf4_block_sizes(param.numel()) is not None:
            out["NF4 weights"] += nf4_bytes(param.numel(), param.element_size())
        elif is_adapter_key(name):
            out["adapters"] += param.nbytes
        else:
            out["high-precision weights"] += param.nbytes
    return out


def nf4_bytes(numel: int, element_size: int) -> int:
    """Bytes of an NF4Tensor of `numel` weights in torchao's layout: 4-bit codes, an int8 scale per block,
    and, in the original dtype (`element_size` bytes), a factor per scaler block, the mean and the 16-entry code table."""
    block, scaler_block = nf4_block_sizes(numel)
    blocks = numel // block
    return numel // 2 + blocks + element_size * (blocks // scaler_block + 1 + 16)


def _working_buffers(cfg: DictConfig, model: torch.nn.Module, batch_size: int, seq_len: int, dtype: torch.dtype) -> int:
    """Transient tensors beside the activations: the loss's logits (see `_loss_buffers`) and the largest NF4
    weight dequantized (with its gradient path) in a QLoRA linear."""
    dequant = max(_nf4_weight_sizes(model), default=0) * _element_size(dtype)
    return _loss_buffers(cfg, model, batch_size * seq_len, dtype) + 2 * dequant


def _loss_buffers(cfg: DictConfig, model: torch.nn.Module, tokens: int, dtype: torch.dtype) -> int:
    """What the loss of `tokens` tokens holds at once. A plain linear output layer takes the fused pass
    (training/linear_cross_entropy.py): one chunk's fp32 log-probabilities and their gradient in the compute
    dtype, plus the scored rows' hidden states and their gradient, and the [tokens, dim] gradient it returns.
    Any other output layer is called per sequence chunk: one chunk's fp32 logits and their gradient."""
    loss = config.instantiate(cfg.loss) if cfg.get("loss") else None
    if not isinstance(loss, ChunkedCrossEntropyLoss):  # a preference loss scores its rows with the default one
        loss = ChunkedCrossEntropyLoss()
    size = _element_size(dtype)
    if plain_linear_weight(model.output) is not None:
        vocab, dim = model.output.weight.shape
        rows = min(tokens, loss.fused_chunk_tokens(vocab))
        return rows * vocab * (4 + size) + 3 * tokens * dim * size
    vocab = model.output.out_features if hasattr(model.output, "out_features") else model.output.weight.shape[0]
    return 2 * math.ceil(tokens / loss.num_output_chunks) * vocab * 4


def _nf4_weight_sizes(model: torch.nn.Module) -> list[int]:
    if not getattr(model, "nf4_requested", False):
        return []
    return [m.weight.numel() for m in model.modules() if isinstance(m, LoRALinear) and nf4_block_sizes(m.weight.numel())]


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype, device="meta").element_size()


def sample_lengths(cfg: DictConfig, limit: Optional[int] = None) -> tuple[list[int], int]:
    """Token counts of the config's data set samples (the first `limit` of them), and how many samples it has:
    one `max_seq_len` per sample when packed (tokenizes the data set, as the recipe does)."""
    if cfg.dataset.get("streaming", False):  # a stream's lengths are unknown until read: assume the longest
        steps = int(cfg.get("max_steps_per_epoch") or 1) * int(cfg.get("gradient_accumulation_steps", 1))
        return [_max_seq_len(cfg)], steps * int(cfg.get("batch_size", 1))
    tokenizer = config.instantiate(cfg.tokenizer)
    dataset = config.instantiate(cfg.dataset, tokenizer)
    if cfg.dataset.get("packed", False):
        return [_max_seq_len(cfg)], len(dataset)
    count = len(dataset) if limit is None else min(len(dataset), limit)
    return [row_length(dataset[i]) for i in range(count)], len(dataset)


def row_length(sample: dict) -> int:
    """The padded length a sample needs in a batch: its tokens, or a preference pair's longer answer (both
    rows of a pair are padded to the batch's length)."""
    if "chosen_tokens" in sample:
        return max(len(sample["chosen_tokens"]), len(sample["rejected_tokens"]))
    return len(sample["tokens"])


def longest_sample(cfg: DictConfig) -> int:
    """The padded batch length the config's data set reaches: `max_seq_len` when packed, else its longest sample."""
    return max(sample_lengths(cfg)[0])


def run_batch_shapes(cfg: DictConfig, lengths: list[int], num_samples: int, world_size: int = 1) -> float:
    """`batch_shapes_seen` for the training batches of the run `cfg` describes (each rank's share of the data)."""
    steps_per_epoch = max(num_samples // (int(cfg.get("batch_size", 1)) * max(world_size, 1)), 1)
    if cfg.get("max_steps_per_epoch"):
        steps_per_epoch = min(steps_per_epoch, int(cfg.max_steps_per_epoch) * int(cfg.get("gradient_accumulation_steps", 1)))
    return batch_shapes_seen(lengths, int(cfg.get("batch_size", 1)), int(cfg.get("epochs", 1)) * steps_per_epoch)


@functools.lru_cache(maxsize=1)
def measure_runtime_baseline() -> int:
    """Peak resident bytes of a fresh interpreter that imports what a recipe imports and runs three training
    steps of a toy QLoRA model (which loads torch's CPU kernels, starts its thread pool and the autograd
    engine): the part of a CPU run's `rss_peak` that does not grow with the model."""
    code = (
        "import torch\n"
        "import torchtune_lite.training.finetune, torchtune_lite.datasets\n"
        # a recipe loads its data through `datasets` (pyarrow and its tables): about 100 MB resident
        f"from torchtune_lite.data.file_loading import load_rows; load_rows('json', {str(_TINY_DATA)!r})\n"
        "from torchtune_lite.models.llama2 import qlora_llama2\n"
        "from torchtune_lite.training.loss import ChunkedCrossEntropyLoss\n"
        "model = qlora_llama2(lora_attn_modules=['q_proj', 'v_proj'], apply_lora_to_mlp=True, lora_rank=4, lora_alpha=8.0,\n"
        "    vocab_size=256, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64, intermediate_dim=128, max_seq_len=64)\n"
        "from torchtune_lite.modules.peft import is_adapter_key\n"
        "adapters = [p for n, p in model.named_parameters() if is_adapter_key(n)]\n"
        "for n, p in model.named_parameters(): p.requires_grad_(is_adapter_key(n))\n"
        "optimizer, loss_fn = torch.optim.AdamW(adapters, fused=True), ChunkedCrossEntropyLoss()\n"
        "for _ in range(3):\n"
        "    tokens = torch.randint(0, 256, (2, 32))\n"
        "    loss_fn(model(tokens, return_hidden=True), model.output, tokens)[0].backward()\n"
        "    optimizer.step(); optimizer.zero_grad()\n"
        # its own peak (see peak_rss_bytes: not ru_maxrss, which carries the parent's peak)
        "from torchtune_lite.training.memory import peak_rss_bytes\n"
        "print(peak_rss_bytes())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(proc.stdout.strip().splitlines()[-1])


def _max_seq_len(cfg: DictConfig) -> int:
    length = cfg.tokenizer.get("max_seq_len")
    if length is None:
        length = cfg.model.get("max_seq_len")
    if length is None:
        raise ValueError("the config sets neither tokenizer.max_seq_len nor model.max_seq_len: pass seq_len to the estimate")
    return int(length)


def _device_type(name: str) -> str:
    name = name.strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu" or name.startswith("cuda"):
        return name.split(":")[0]
    raise ValueError(f"device={name} is not supported: use auto, cpu, cuda or cuda:N")


def _dtype(name, device_type: str) -> torch.dtype:
    # Estimating for a GPU from a machine without one: "auto" there means bf16 (every GPU we target has it).
    if device_type == "cuda" and not torch.cuda.is_available():
        name = "bf16" if name in (None, "auto") else name
        return get_dtype(name, torch.device("cpu")) if str(name).lower() not in ("bf16", "bfloat16") else torch.bfloat16
    return get_dtype(name, torch.device(device_type))
