"""Meta's original Llama-2 layout: `consolidated.00.pth` (+ `params.json`, `tokenizer.model`).

Only keys differ from ours (Meta uses the interleaved RoPE order too), so nothing is permuted.
Model-parallel checkpoints (`consolidated.01.pth`, ... for 13B/70B) are not supported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch

from torchtune_lite.checkpointing._base import ADAPTER_WEIGHTS_FILE, CheckpointerBase, to_cpu_plain
from torchtune_lite.checkpointing._convert_weights import META_KEYS, ModelShape
from torchtune_lite.checkpointing._errors import CheckpointFormatError, CheckpointNotFoundError
from torchtune_lite.checkpointing._safetensors_io import (
    TensorToWrite,
    load_torch_file,
    write_safetensors,
    write_torch_file,
)

META_WEIGHTS_FILE = "consolidated.00.pth"


class FullModelMetaCheckpointer(CheckpointerBase):
    """Reads and writes single-file Meta checkpoints; adapters are saved with our keys in safetensors."""

    support_files = ("params.json", "tokenizer.model")

    def __init__(
        self,
        checkpoint_dir: Union[str, Path],
        checkpoint_files: Any = None,
        model_type: str = "LLAMA2",
        output_dir: Union[str, Path] = "output",
        adapter_checkpoint: Optional[Union[str, Path]] = None,
        recipe_checkpoint: Optional[Union[str, Path]] = None,
    ) -> None:
        super().__init__(checkpoint_dir, checkpoint_files, model_type, output_dir, adapter_checkpoint, recipe_checkpoint)
        names = [META_WEIGHTS_FILE] if checkpoint_files is None else (
            [str(checkpoint_files)] if isinstance(checkpoint_files, (str, Path)) else [str(n) for n in checkpoint_files])
        if len(names) != 1:
            raise ValueError(f"checkpoint_files={names}: model-parallel Meta checkpoints are not supported; "
                             "use the HF checkpoint of this model with FullModelHFCheckpointer")
        self.file = self.checkpoint_dir / names[0]
        if not self.file.is_file():
            found = sorted(p.name for p in self.checkpoint_dir.iterdir() if p.suffix in (".pth", ".pt", ".bin"))
            raise CheckpointNotFoundError(
                f"checkpoint_files: {names[0]} not found in {self.checkpoint_dir} (found: {found}): "
                "fix checkpointer.checkpoint_files"
            )
        params = self.checkpoint_dir / "params.json"
        if params.is_file():
            try:
                self.shape = ModelShape.from_meta_params(json.loads(params.read_text()))
            except (json.JSONDecodeError, KeyError) as err:
                raise CheckpointFormatError(f"{params} is not Llama params ({err!r}): use the params.json that came with the weights") from err

    def weight_files(self) -> list[Path]:
        return [self.file]

    def iter_model(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(our key, tensor) pairs; the .pth is memory-mapped, so only what the caller keeps is resident."""
        for meta_key, value in load_torch_file(self.file).items():
            key = META_KEYS.to_ours(meta_key, str(self.file))
            if key is not None:
                yield key, value

    def model_tensor_to_write(self, key: str, shape: tuple[int, ...], dtype: torch.dtype, produce) -> Optional[TensorToWrite]:
        return TensorToWrite(META_KEYS.to_theirs(key), shape, dtype, produce)

    def write_model(self, stage: Path, tensors: list[TensorToWrite]) -> list[str]:
        # One file by definition of the layout, so the whole model is materialized at once here.
        write_torch_file(stage / META_WEIGHTS_FILE, tensors)
        return [META_WEIGHTS_FILE]

    def write_adapter(self, stage: Path, adapter: dict, config: dict) -> list[str]:
        tensors = [TensorToWrite(k, tuple(v.shape), v.dtype, lambda v=v: to_cpu_plain(v)) for k, v in adapter.items()]
        write_safetensors(stage / ADAPTER_WEIGHTS_FILE, tensors)
        return [ADAPTER_WEIGHTS_FILE, self.write_adapter_config(stage, config)]
