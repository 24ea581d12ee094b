"""Time and memory of QLoRA Llama-3.1-8B shapes on CPU (vocab 128256, GQA 32/8, feed-forward 14336, llama3 RoPE):
cold build from a checkpoint, NF4 cache, warm build, merged save; the phases of build_qlora_7b.py.

    python benchmarks/build_qlora_llama3_8b.py --checkpoint-dir /tmp/llama3_8b_random --save-dir /tmp/llama3_8b_save

No hub downloads: when `--checkpoint-dir` holds no weights, random bf16 weights of Llama-3.1-8B's shapes are
written there once with a Llama-3.1 config.json (16 GB; delete it when done). The model is built by
`from_pretrained_config` from that folder, as `--config hf/qlora` does: LoRA on q_proj, v_proj,
output_proj and the MLP, rank 8, bf16. `--train-seq-len N` adds a forward+backward and training steps.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import torch

from machine_limit import device_description
from build_qlora_7b import Phase, build_phases, save_phase, train_phases, write_random_checkpoint
from torchtune_lite.models import from_pretrained_config
from torchtune_lite.models._hf_config import decoder_args_from_hf_config
from torchtune_lite.checkpointing import FullModelHFCheckpointer
from torchtune_lite.checkpointing.nf4_cache import nf4_cache_path
from torchtune_lite.training.device import get_device
from torchtune_lite.training.precision import get_dtype

LLAMA3_1_8B_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16", "vocab_size": 128_256,
    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "max_position_embeddings": 131_072, "rms_norm_eps": 1e-5, "rope_theta": 500_000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192},
    "tie_word_embeddings": False, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint-dir", required=True, help="HF checkpoint folder; random weights are written there if empty")
    parser.add_argument("--cache-dir", default=None, help="NF4 cache folder (default: <checkpoint-dir>/nf4_cache)")
    parser.add_argument("--save-dir", default=None, help="also time a merged HF checkpoint save into this folder")
    parser.add_argument("--train-seq-len", type=int, default=0, help="0 skips the forward/backward and train steps")
    parser.add_argument("--max-seq-len", type=int, default=8192, help="the model's max_seq_len (RoPE table), as the configs set it")
    parser.add_argument("--dtype", default="bf16", help="bf16, fp32 or auto")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    args = parser.parse_args()

    device = get_device(args.device)
    dtype = get_dtype(args.dtype, device)
    torch.set_default_dtype(dtype)
    ckpt_dir = Path(args.checkpoint_dir)
    decoder = decoder_args_from_hf_config(LLAMA3_1_8B_CONFIG)
    shape = dict(vocab_size=decoder.vocab_size, embed_dim=decoder.embed_dim, intermediate_dim=decoder.intermediate_dim,
                 num_layers=decoder.num_layers, num_heads=decoder.num_heads, num_kv_heads=decoder.num_kv_heads)
    if not (ckpt_dir / "config.json").is_file():
        with Phase(f"writing random bf16 checkpoint to {ckpt_dir}"):
            write_random_checkpoint(ckpt_dir, shape, LLAMA3_1_8B_CONFIG)
    build = functools.partial(from_pretrained_config, ckpt_dir, ["q_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True,
                              lora_rank=8, lora_alpha=16, quantize_base=True, max_seq_len=args.max_seq_len)
    print(f"qlora Llama-3.1-8B shapes from config.json, {dtype}, torch {torch.__version__}, {device_description(device)}")

    checkpointer = FullModelHFCheckpointer(ckpt_dir, output_dir=args.save_dir or ckpt_dir / "out")
    cache = nf4_cache_path(Path(args.cache_dir or ckpt_dir / "nf4_cache"), checkpointer.files,
                           {"model": "llama3_1_8b_qlora", "dtype": str(dtype)})
    cache.unlink(missing_ok=True)
    model = build_phases(build, checkpointer, cache, device)
    if args.train_seq_len:
        train_phases(model, shape, args.train_seq_len, dtype, device)
    if args.save_dir:
        save_phase(model, checkpointer)


if __name__ == "__main__":
    main()
