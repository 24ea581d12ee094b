"""Time and memory of QLoRA Llama-2-7B on CPU: build from a checkpoint, NF4 cache, train step, save.

    python benchmarks/build_qlora_7b.py --checkpoint-dir /tmp/llama2_7b_random   # the full 32 layers
    python benchmarks/build_qlora_7b.py --checkpoint-dir /tmp/l7b_2 --num-layers 2  # a shortened 7B
    ... --save-dir /tmp/qlora_save    # also time a full merged HF checkpoint save

No hub downloads: when `--checkpoint-dir` holds no weights, random bf16 weights of the right shapes are
written there once as a sharded HF checkpoint (13.5 GB for 7B; delete it when done). LoRA on q_proj,
v_proj, output_proj and the MLP, rank 8, as in configs/llama2/7B_qlora.yaml; bf16 throughout.

Phases, each with its own peak RSS (VmHWM, reset between phases via /proc/self/clear_refs):
  cold build   build the model on the meta device, allocate it, stream the checkpoint in (quantizing
               each LoRA'd weight to NF4 as it arrives)
  cache write  save the quantized base as the NF4 cache (torchtune_lite.checkpointing.nf4_cache)
  warm build   the same model filled from the NF4 cache instead (no quantization)
  fwd+bwd      one forward and backward at batch 1 x 64 tokens (--skip-train skips this and the next)
  train step   batch 1 x --train-seq-len tokens with activation checkpointing: forward, chunked loss,
               backward, AdamW (--compile: layers and loss compiled, as `compile=True`; the first step
               then includes compiling, and a third step is timed)
  save         the merged model as HF safetensors shards plus the PEFT adapter, streamed tensor by tensor

The model is built on the meta device and given empty storage, as every recipe does, so nothing is
initialized or quantized only to be overwritten. On a CPU without native bf16 matmul (AVX2 only) torch's
bf16 GEMM is 50-100x slower than fp32, so run the fwd+bwd and train-step phases with --dtype fp32 (or
auto) there; they are then bound by fp32 GEMM throughput (about 150 GFLOP/s on 2 AVX2 cores).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import time
from pathlib import Path
from typing import Optional

import torch

from torchtune_lite._torchao import NF4Tensor
from torchtune_lite.models.llama2 import qlora_llama2
from torchtune_lite.models.llama2._model_builders import _COMMON, _SHAPES
from torchtune_lite.modules.peft import get_adapter_params, is_adapter_key, set_trainable_params
from torchtune_lite.modules.transformer import TransformerDecoderLayer
from torchtune_lite.training.activations import apply_activation_checkpointing
from torchtune_lite.training.compile import compile_loss, compile_model
from torchtune_lite.checkpointing import FullModelHFCheckpointer
from torchtune_lite.checkpointing._convert_weights import HF_KEYS, ModelShape
from torchtune_lite.checkpointing._safetensors_io import TensorToWrite, write_sharded
from machine_limit import LlamaShape, device_description, step_limit
from torchtune_lite.training.device import get_device
from torchtune_lite.training.loss import ChunkedCrossEntropyLoss
from torchtune_lite.training.memory import get_memory_stats, reset_peak_memory_stats
from torchtune_lite.training.precision import get_dtype
from torchtune_lite.checkpointing.nf4_cache import nf4_cache_path, save_nf4_cache
from torchtune_lite.training.model_from_checkpoint import build_model_from_checkpoint


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM to the current RSS


def peak_rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def model_bytes(model: torch.nn.Module) -> int:
    """Bytes of all parameters and buffers, counting an NF4Tensor by its inner tensors."""
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if isinstance(tensor, NF4Tensor):
            names, _ = tensor.__tensor_flatten__()
            total += sum(getattr(tensor, n).numel() * getattr(tensor, n).element_size() for n in names)
        else:
            total += tensor.numel() * tensor.element_size()
    return total


class Phase:
    """`with Phase("name"):` prints the phase's wall time and peak RSS (and the GPU allocator's peak on CUDA)."""

    def __init__(self, name: str, device: torch.device = torch.device("cpu")) -> None:
        self.name, self.device = name, device

    def __enter__(self) -> Phase:
        gc.collect()
        reset_peak_rss()
        reset_peak_memory_stats(self.device)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds = time.perf_counter() - self.start
        gpu = get_memory_stats(self.device).get("peak_memory_alloc")
        gpu_note = f", GPU peak allocated {gpu:.2f} GiB" if gpu is not None else ""
        print(f"{self.name}: {self.seconds:.1f} s, peak RSS {peak_rss_gib():.2f} GiB{gpu_note}", flush=True)


def hf_config(shape: dict) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16",
        "vocab_size": shape["vocab_size"], "hidden_size": shape["embed_dim"], "intermediate_size": shape["intermediate_dim"],
        "num_hidden_layers": shape["num_layers"], "num_attention_heads": shape["num_heads"],
        "num_key_value_heads": shape["num_kv_heads"], "max_position_embeddings": shape["max_seq_len"],
        "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
    }  # fmt: skip


def write_random_checkpoint(folder: Path, shape: dict, config: Optional[dict] = None) -> None:
    """Random bf16 weights (std 0.02, norms near 1) as HF safetensors shards, one tensor in memory at a time.
    `config`: the config.json to write (default: Llama-2's for `shape`)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = config or hf_config(shape)
    generator = torch.Generator().manual_seed(0)

    def random_weight(key: str, size: tuple[int, ...]) -> torch.Tensor:
        if key.endswith("scale"):
            return (1 + 0.1 * torch.randn(size, generator=generator)).to(torch.bfloat16)
        return (0.02 * torch.randn(size, generator=generator, dtype=torch.bfloat16))

    tensors = [
        TensorToWrite(HF_KEYS.to_theirs(key), size, torch.bfloat16, functools.partial(random_weight, key, size))
        for key, size in ModelShape.from_hf_config(config).expected_shapes().items()
    ]
    write_sharded(folder, tensors)
    (folder / "config.json").write_text(json.dumps(config))


def build_loaded(build, checkpointer, cache: Optional[Path], device: torch.device) -> tuple[torch.nn.Module, bool]:
    """The model from the checkpoint as the recipes build it, through the NF4 cache `cache` when given (written
    if absent); True when the cache was read (it exists and was not rewritten)."""
    stamp = cache.stat().st_mtime_ns if cache is not None and cache.is_file() else None
    model = build_model_from_checkpoint(build, checkpointer, device=device, dtype=torch.get_default_dtype(), nf4_cache=cache)
    return model, stamp is not None and cache.stat().st_mtime_ns == stamp


def train_step(model, loss_fn, optimizer, seq_len: int, vocab: int, generator: torch.Generator) -> float:
    tokens = torch.randint(0, vocab, (1, seq_len + 1), generator=generator).to(model.output.weight.device)
    hidden = model(tokens[:, :-1], return_hidden=True)
    loss_sum, count = loss_fn(hidden, model.output, tokens[:, 1:])
    loss = loss_sum / count
    loss.backward()
    if optimizer is not None:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-layers", type=int, default=_SHAPES["7b"]["num_layers"])
    parser.add_argument("--checkpoint-dir", required=True, help="HF checkpoint folder; random weights are written there if empty")
    parser.add_argument("--cache-dir", default=None, help="NF4 cache folder (default: <checkpoint-dir>/nf4_cache)")
    parser.add_argument("--save-dir", default=None, help="also time a merged HF checkpoint save into this folder")
    parser.add_argument("--train-seq-len", type=int, default=512)
    parser.add_argument("--skip-train", action="store_true", help="skip the forward/backward and train-step phases")
    parser.add_argument("--dtype", default="auto", help="bf16, fp32 or auto (bf16 only where the device computes it natively)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--compile", action="store_true", help="compile the layers and the loss for the train steps")
    args = parser.parse_args()

    device = get_device(args.device)
    dtype = get_dtype(args.dtype, device)
    torch.set_default_dtype(dtype)
    shape = {**_COMMON, **_SHAPES["7b"], "num_layers": args.num_layers}
    build = functools.partial(
        qlora_llama2, ["q_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True, lora_rank=8, lora_alpha=16, **shape
    )
    print(f"qlora_llama2_7b with {args.num_layers} layers, {dtype}, torch {torch.__version__}, {device_description(device)}")

    ckpt_dir = Path(args.checkpoint_dir)
    if not (ckpt_dir / "config.json").is_file():
        with Phase(f"writing random bf16 checkpoint to {ckpt_dir}"):
            write_random_checkpoint(ckpt_dir, shape)
    checkpointer = FullModelHFCheckpointer(ckpt_dir, output_dir=args.save_dir or ckpt_dir / "out")
    cache = nf4_cache_path(Path(args.cache_dir or ckpt_dir / "nf4_cache"), checkpointer.files, {"shape": shape, "dtype": str(dtype)})
    cache.unlink(missing_ok=True)

    model = build_phases(build, checkpointer, cache, device)
    if not args.skip_train:
        train_phases(model, shape, args.train_seq_len, dtype, device, args.compile)

    if args.save_dir:
        save_phase(model, checkpointer)


def build_phases(build, checkpointer, cache: Path, device: torch.device) -> torch.nn.Module:
    """Times a cold build, writing the NF4 cache at `cache`, and a warm build from it; returns the warm
    model with only its adapters trainable."""
    with Phase("cold build (meta build + stream checkpoint + quantize to NF4)"):
        model, _ = build_loaded(build, checkpointer, None, device)
    with Phase("writing the NF4 cache"):
        save_nf4_cache(cache, {k: v for k, v in model.named_parameters() if not is_adapter_key(k)})
    print(f"  NF4 cache {cache}: {cache.stat().st_size / 2**30:.2f} GiB")
    del model
    with Phase("warm build (meta build + NF4 cache)"):
        model, hit = build_loaded(build, checkpointer, cache, device)
    assert hit
    print(f"  model holds {model_bytes(model) / 2**30:.2f} GiB")
    set_trainable_params(model, get_adapter_params(model))
    return model


def save_phase(model: torch.nn.Module, checkpointer) -> None:
    """Times a merged HF checkpoint save (rank-8, alpha-16 adapter) and prints how much was written, how fast."""
    state = {name: p.detach() for name, p in model.named_parameters()}
    with Phase("save (merged HF shards + PEFT adapter, streamed)") as phase:
        path = checkpointer.save_checkpoint({"model": state, "adapter_config": {"r": 8, "lora_alpha": 16}}, epoch=0)
    written = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    print(f"  wrote {written / 2**30:.2f} GiB to {path} ({written / 2**30 / phase.seconds:.2f} GiB/s)")


def train_phases(
    model: torch.nn.Module, shape: dict, seq_len: int, dtype: torch.dtype, device: torch.device, compile: bool
) -> None:
    limit = step_limit(
        LlamaShape(shape["embed_dim"], shape["num_layers"], shape["num_heads"], shape["num_kv_heads"],
                   shape["intermediate_dim"], shape["vocab_size"]),
        1, seq_len, dtype, device, repeat=2,
    )
    print(f"limit (1 x {seq_len} tokens, without the recompute of activation checkpointing): {limit.describe(dtype)}")
    loss_fn = ChunkedCrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    with Phase("forward+backward, 1 x 64 tokens", device):
        train_step(model, loss_fn, None, 64, shape["vocab_size"], generator)
    model.zero_grad(set_to_none=True)

    apply_activation_checkpointing(model, (TransformerDecoderLayer,))
    if compile:
        compile_model(model, (TransformerDecoderLayer,), device)
        compile_loss(loss_fn)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    mode = "compiled" if compile else "eager"
    for i in range(3 if compile else 2):  # the first step also allocates the optimizer state (and compiles)
        with Phase(f"train step {i + 1} ({mode}), 1 x {seq_len} tokens, activation checkpointing, AdamW", device) as phase:
            loss = train_step(model, loss_fn, optimizer, seq_len, shape["vocab_size"], generator)
        tokens_per_s = seq_len / phase.seconds
        print(f"  loss {loss:.3f}; {tokens_per_s:.1f} tokens/s = {limit.percent(tokens_per_s)} of the limit")


if __name__ == "__main__":
    main()
