"""Time and memory of building QLoRA Llama-2-7B (bf16 default dtype) and of taking its state dict.

    python benchmarks/build_qlora_7b.py                  # the full 32 layers (needs ~5 GB RAM)
    python benchmarks/build_qlora_7b.py --num-layers 2   # a shortened 7B for a quick run

LoRA on q_proj, v_proj, output_proj and the MLP, as in configs/llama2/7B_qlora.yaml. Peak RSS is the
process's high-water mark (resource.getrusage), so each phase reports the peak reached so far.
"""

import argparse
import functools
import json
import resource
import sys
import time
from pathlib import Path

import torch

from torchtune_lite._torchao import NF4Tensor
from torchtune_lite.models.llama2 import qlora_llama2
from torchtune_lite.models.llama2._model_builders import _COMMON, _SHAPES


def peak_rss_gib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return kib / (1024**3 if sys.platform == "darwin" else 1024**2)


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


def streaming_save(model: torch.nn.Module, shape: dict, out: Path) -> None:
    """What the LoRA recipe does at a checkpoint: NF4 weights go to the checkpointer as they are and are
    dequantized, merged with their adapters and written one shard at a time."""
    from torchtune_lite.training.checkpointing import FullModelHFCheckpointer

    src = out / "config_only"
    src.mkdir(parents=True, exist_ok=True)
    (src / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16",
        "vocab_size": shape["vocab_size"], "hidden_size": shape["embed_dim"], "intermediate_size": shape["intermediate_dim"],
        "num_hidden_layers": shape["num_layers"], "num_attention_heads": shape["num_heads"],
        "num_key_value_heads": shape["num_kv_heads"], "max_position_embeddings": shape["max_seq_len"],
        "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
    }))
    checkpointer = FullModelHFCheckpointer(src, checkpoint_files=[], output_dir=out)
    state = {name: p.detach() for name, p in model.named_parameters()}
    start = time.perf_counter()
    path = checkpointer.save_checkpoint({"model": state, "adapter_config": {"r": 8, "lora_alpha": 16}}, epoch=0)
    print(f"streaming save (merged HF shards + PEFT adapter): {time.perf_counter() - start:.1f} s, "
          f"peak RSS {peak_rss_gib():.2f} GiB, wrote {sum(f.stat().st_size for f in path.rglob('*') if f.is_file()) / 2**30:.2f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-layers", type=int, default=_SHAPES["7b"]["num_layers"])
    parser.add_argument("--save-dir", default=None, help="also time a streaming HF checkpoint save into this folder")
    args = parser.parse_args()

    shape = {**_COMMON, **_SHAPES["7b"], "num_layers": args.num_layers}
    build = functools.partial(
        qlora_llama2,
        ["q_proj", "v_proj", "output_proj"],
        apply_lora_to_mlp=True,
        lora_rank=8,
        lora_alpha=16,
        **shape,
    )
    print(f"qlora_llama2_7b with {args.num_layers} layers, bf16 default dtype, torch {torch.__version__}")
    print(f"start: peak RSS {peak_rss_gib():.2f} GiB")

    torch.set_default_dtype(torch.bfloat16)
    start = time.perf_counter()
    model = build()
    built = time.perf_counter() - start
    print(f"build: {built:.1f} s, peak RSS {peak_rss_gib():.2f} GiB, model holds {model_bytes(model) / 2**30:.2f} GiB")

    if args.save_dir:
        streaming_save(model, shape, Path(args.save_dir))

    start = time.perf_counter()
    state = model.state_dict()
    taken = time.perf_counter() - start
    state_bytes = sum(v.numel() * v.element_size() for v in state.values())
    print(f"state_dict: {taken:.1f} s, peak RSS {peak_rss_gib():.2f} GiB, {state_bytes / 2**30:.2f} GiB of plain tensors")


if __name__ == "__main__":
    main()
