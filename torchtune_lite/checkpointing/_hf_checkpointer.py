"""Hugging Face checkpoints (Llama-2/3.x, Mistral, Qwen2/2.5, Qwen3, Gemma-2/3): `model*.safetensors` / `pytorch_model*.bin` plus `config.json`.

Loads into our keys (q/k rows re-ordered from HF's rotate-half layout to the interleaved one) and saves
back as sharded safetensors that `transformers.LlamaForCausalLM.from_pretrained` reads, with LoRA
adapters in PEFT's format that `peft.PeftModel.from_pretrained` reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch

from torchtune_lite.checkpointing._atomic import atomic_write_bytes
from torchtune_lite.checkpointing._base import ADAPTER_WEIGHTS_FILE, CheckpointerBase, to_cpu_plain
from torchtune_lite.checkpointing._convert_weights import (
    ModelShape,
    hf_to_interleaved,
    interleaved_to_hf,
    lora_key_to_hf,
    rotary_heads,
)
from torchtune_lite.checkpointing._errors import CheckpointFormatError, CheckpointNotFoundError
from torchtune_lite.checkpointing._safetensors_io import (
    DEFAULT_MAX_SHARD_BYTES,
    TensorToWrite,
    iter_safetensors,
    load_torch_file,
    write_safetensors,
    write_sharded,
)

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


class FullModelHFCheckpointer(CheckpointerBase):
    """Reads and writes decoder weights (Llama-2/3.x, Mistral, Qwen2/2.5, Qwen3, Gemma-2/3) in the Hugging Face layout.

    `checkpoint_files`: a list of file names in `checkpoint_dir`; or
    `{"filename_format": "model-{}-of-{}.safetensors", "max_filename": "00002"}`; or None to find them
    from `model.safetensors.index.json`, `model.safetensors` or `pytorch_model*.bin`.
    Saves shards of at most `max_shard_size` bytes: safetensors, or `pytorch_model-*.bin` when
    `safe_serialization=False`.
    """

    support_files = ("config.json", "generation_config.json", "tokenizer.model", "tokenizer.json",
                     "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "vocab.json",
                     "merges.txt", "added_tokens.json")

    def __init__(
        self,
        checkpoint_dir: Union[str, Path],
        checkpoint_files: Any = None,
        model_type: str = "LLAMA2",
        output_dir: Union[str, Path] = "output",
        adapter_checkpoint: Optional[Union[str, Path]] = None,
        recipe_checkpoint: Optional[Union[str, Path]] = None,
        safe_serialization: bool = True,
        max_shard_size: int = DEFAULT_MAX_SHARD_BYTES,
    ) -> None:
        super().__init__(checkpoint_dir, checkpoint_files, model_type, output_dir, adapter_checkpoint, recipe_checkpoint)
        self.safe_serialization = safe_serialization
        self._untie = False  # set per save: tied embeddings, but the output projection carries LoRA
        self.max_shard_size = int(max_shard_size)
        config_path = self.checkpoint_dir / "config.json"
        if not config_path.is_file():
            raise CheckpointNotFoundError(
                f"{config_path} not found: an HF checkpoint folder needs its config.json (download the whole repo, "
                "or use FullModelMetaCheckpointer for consolidated.*.pth weights)"
            )
        try:
            self.config = json.loads(config_path.read_text())
            self.shape = ModelShape.from_hf_config(self.config)
        except (json.JSONDecodeError, KeyError) as err:
            raise CheckpointFormatError(f"{config_path} is not a Llama config ({err!r}): use the config.json that came with the weights") from err
        self.files = self._find_weight_files(checkpoint_files)

    # ------------------------------------------------------------------ which files
    def _find_weight_files(self, checkpoint_files: Any) -> list[Path]:
        names: list[str]
        if checkpoint_files is None:
            names = self._discover()
        elif isinstance(checkpoint_files, (str, Path)):
            names = [str(checkpoint_files)]
        elif hasattr(checkpoint_files, "keys"):
            fmt, last = checkpoint_files.get("filename_format"), checkpoint_files.get("max_filename")
            if not fmt or not last:
                raise ValueError("checkpoint_files as a dict needs filename_format and max_filename, e.g. "
                                 "{filename_format: 'model-{}-of-{}.safetensors', max_filename: '00002'}")
            last = str(last)
            names = [fmt.format(str(i).zfill(len(last)), last) for i in range(1, int(last) + 1)]
        else:
            names = [str(n) for n in checkpoint_files]
        paths = [self.checkpoint_dir / n for n in names]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            found = sorted(p.name for p in self.checkpoint_dir.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
            raise CheckpointNotFoundError(
                f"checkpoint_files: {', '.join(missing)} not found in {self.checkpoint_dir} (found: {found}): "
                "fix checkpointer.checkpoint_files or download the missing shards"
            )
        return paths

    def _discover(self) -> list[str]:
        d = self.checkpoint_dir
        for index_name, single in (("model.safetensors.index.json", "model.safetensors"),
                                   ("pytorch_model.bin.index.json", "pytorch_model.bin")):
            if (d / index_name).is_file():
                try:
                    weight_map = json.loads((d / index_name).read_text())["weight_map"]
                except (json.JSONDecodeError, KeyError) as err:
                    raise CheckpointFormatError(f"{d / index_name} is not a weight index ({err!r}): download it again") from err
                return sorted(set(weight_map.values()))
            if (d / single).is_file():
                return [single]
        found = sorted(p.name for p in d.iterdir())
        raise CheckpointNotFoundError(
            f"no model.safetensors(.index.json) or pytorch_model*.bin in {d} (found: {found}): set "
            "checkpointer.checkpoint_files or point checkpoint_dir at an HF model folder"
        )

    # ------------------------------------------------------------------ loading
    def weight_files(self) -> list[Path]:
        return list(self.files)

    def iter_model(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(our key, tensor) pairs, read one at a time, so a caller can copy (or quantize) each into the
        model and drop it before the next: the whole high-precision model is never in memory at once."""
        seen: set[str] = set()
        for path in self.files:
            items = iter_safetensors(path) if path.suffix == ".safetensors" else load_torch_file(path).items()
            for hf_key, value in items:
                key = self.shape.hf_keys.to_ours(hf_key, str(path))
                if key is None:
                    continue
                heads = rotary_heads(key, self.shape)
                if heads is not None:
                    value = self._reorder(value, heads, hf_to_interleaved, key, path)
                seen.add(key)
                yield key, value
        if "output.weight" not in seen and "tok_embeddings.weight" in seen:
            # tied embeddings: HF stores one copy; read it again rather than keep it around
            for path in self.files:
                items = iter_safetensors(path) if path.suffix == ".safetensors" else load_torch_file(path).items()
                for hf_key, value in items:
                    if self.shape.hf_keys.to_ours(hf_key, str(path)) == "tok_embeddings.weight":
                        yield "output.weight", value
                        return

    def _reorder(self, value: torch.Tensor, heads: int, fn, key: str, path: Path) -> torch.Tensor:
        if value.dim() not in (1, 2) or value.shape[0] % (2 * heads):
            raise CheckpointFormatError(
                f"{path}: {key} has shape {list(value.shape)}, which does not split into {heads} heads of even size: "
                "use the config.json that came with these weights"
            )
        return fn(value, heads)

    # ------------------------------------------------------------------ saving
    def save_checkpoint(self, state_dict: dict[str, Any], epoch: int, **kwargs: Any) -> Path:
        # With tied embeddings, a LoRA on the output projection makes the merged lm_head differ from the
        # embedding: then the merged model is saved untied (lm_head written, config says so), which is what
        # the adapter loaded by peft onto the tied model computes.
        model = state_dict.get("model") or {}
        self._untie = self.shape.tie_word_embeddings and "output.lora_a.weight" in model
        return super().save_checkpoint(state_dict, epoch, **kwargs)

    def copy_support_files(self, stage: Path) -> list[str]:
        copied = super().copy_support_files(stage)
        if self._untie:
            atomic_write_bytes(stage / "config.json", json.dumps({**self.config, "tie_word_embeddings": False}, indent=2).encode())
        return copied

    def model_tensor_to_write(self, key: str, shape: tuple[int, ...], dtype: torch.dtype, produce) -> Optional[TensorToWrite]:
        if key == "output.weight" and self.shape.tie_word_embeddings and not self._untie:
            return None  # HF ties lm_head to embed_tokens itself
        heads = rotary_heads(key, self.shape)
        if heads is None:
            return TensorToWrite(self.shape.hf_keys.to_theirs(key), shape, dtype, produce)
        # the q/k row permutation keeps shape and dtype
        return TensorToWrite(self.shape.hf_keys.to_theirs(key), shape, dtype, lambda: interleaved_to_hf(produce(), heads))

    def write_model(self, stage: Path, tensors: list[TensorToWrite]) -> list[str]:
        return write_sharded(stage, tensors, self.max_shard_size, safetensors=self.safe_serialization)

    def write_adapter(self, stage: Path, adapter: dict, config: dict) -> list[str]:
        tensors = []
        for key, value in adapter.items():
            heads = rotary_heads(key, self.shape)

            def produce(value=value, heads=heads) -> torch.Tensor:
                out = to_cpu_plain(value)
                return interleaved_to_hf(out, heads) if heads is not None else out

            tensors.append(TensorToWrite(lora_key_to_hf(key), tuple(value.shape), value.dtype, produce))
        write_safetensors(stage / ADAPTER_WEIGHTS_FILE, tensors)
        return [ADAPTER_WEIGHTS_FILE, self.write_adapter_config(stage, config)]
