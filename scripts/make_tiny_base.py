"""Rebuilds the bundled tiny pretrained base model (torchtune_lite/assets/tiny/base/).

    python scripts/make_tiny_base.py            # about 10-15 minutes on a 2-core CPU

1. writes a randomly initialised tiny Llama-2 (the architecture of configs/tiny/pretrain.yaml) in
   Hugging Face format, 2. pretrains it on the bundled corpus with the full fine-tune recipe,
3. copies the final weights (bf16 safetensors) and config.json into the package assets.
The corpus, tokenizer and instruction data come from scripts/make_tiny_assets.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

from torchtune_lite import config
from torchtune_lite.config import resolve_config
from torchtune_lite.checkpointing import FullModelHFCheckpointer

ASSETS = Path(__file__).resolve().parents[1] / "torchtune_lite" / "assets" / "tiny"


def hf_llama_config(model_cfg) -> dict:
    """The Hugging Face `config.json` of a model built by `llama2(...)` with these arguments."""
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "float32",
        "vocab_size": model_cfg.vocab_size, "hidden_size": model_cfg.embed_dim,
        "intermediate_size": model_cfg.intermediate_dim, "num_hidden_layers": model_cfg.num_layers,
        "num_attention_heads": model_cfg.num_heads, "num_key_value_heads": model_cfg.num_kv_heads,
        "max_position_embeddings": model_cfg.max_seq_len, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "hidden_act": "silu", "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
    }


def write_random_init(model: torch.nn.Module, model_cfg, out: Path) -> None:
    """Saves `model` as an HF folder (config.json + model.safetensors) through our own checkpointer."""
    staging = out / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    (staging / "config.json").write_text(json.dumps(hf_llama_config(model_cfg), indent=2))
    checkpointer = FullModelHFCheckpointer(staging, checkpoint_files=[], output_dir=staging)
    saved = checkpointer.save_checkpoint({"model": model.state_dict()}, epoch=0)
    for f in saved.iterdir():
        shutil.move(str(f), out / f.name)
    shutil.rmtree(staging)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="tiny_base_"))
    init_dir, run_dir = work / "init", work / "run"
    model_cfg = OmegaConf.load(resolve_config("tiny/pretrain")).model
    torch.manual_seed(0)
    model = config.instantiate(model_cfg)
    write_random_init(model, model_cfg, init_dir)

    overrides = [f"checkpointer.checkpoint_dir={init_dir}", f"output_dir={run_dir}"]
    if args.epochs is not None:
        overrides.append(f"epochs={args.epochs}")
    cmd = [sys.executable, "-m", "torchtune_lite.cli.tune", "run", "full_finetune_single_device",
           "--config", "tiny/pretrain", *overrides]
    subprocess.run(cmd, check=True)

    final = sorted(run_dir.glob("epoch_*"), key=lambda p: int(p.name.split("_")[1]))[-1]
    out = ASSETS / "base"
    out.mkdir(parents=True, exist_ok=True)
    # Ship bf16 weights: half the size, and what the fine-tuning configs compute in.
    from safetensors.torch import load_file, save_file

    weights = {}
    for shard in sorted(final.glob("*.safetensors")):
        weights.update({k: v.to(torch.bfloat16).contiguous() for k, v in load_file(shard).items()})
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    cfg = (final / "config.json").read_text().replace('"float32"', '"bfloat16"')
    (out / "config.json").write_text(cfg)
    print(f"wrote {out} from {final}")


if __name__ == "__main__":
    main()
