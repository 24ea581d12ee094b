"""LoRA and QLoRA fine-tuning on one device (CPU or one GPU).

    tune run lora_finetune_single_device --config 7B_qlora
    tune run lora_finetune_single_device --config tiny/qlora max_steps_per_epoch=20 dtype=fp32

The story of a run: build the model from a checkpoint with only the LoRA adapters trainable, build the
data, optimizer and loss, run the shared training loop, and save after every epoch (merged weights in
the input's format, the adapter in PEFT format, and the state needed to resume).
"""

from dataclasses import dataclass
from pathlib import Path

import torch

from torchtune_lite import config
from torchtune_lite.modules.peft import (
    get_adapter_params,
    get_adapter_state_dict,
    get_merged_lora_ckpt,
    set_trainable_params,
)
from torchtune_lite.training.finetune import FinetuneConfig, FinetuneRecipe
from torchtune_lite.training.output_dir import RECIPE_STATE_FILE


@dataclass
class LoRARecipeConfig(FinetuneConfig):
    save_adapter_weights_only: bool = False


class LoRAFinetuneRecipeSingleDevice(FinetuneRecipe):
    """Only the adapters train; the base stays frozen (and in NF4 for QLoRA)."""

    def setup_model(self, checkpoint: dict) -> torch.nn.Module:
        model = self.build_model()
        base_missing, base_unexpected = model.load_state_dict(checkpoint["model"], strict=False)
        if "adapter" in checkpoint:
            model.load_state_dict(checkpoint["adapter"], strict=False)
        self.check_loaded_keys(model, base_missing, base_unexpected, loaded_adapter="adapter" in checkpoint)
        self.adapter_params = get_adapter_params(model)
        set_trainable_params(model, self.adapter_params)
        return model

    def trainable_params(self) -> list[torch.nn.Parameter]:
        return list(self.adapter_params.values())

    def checkpoint_payload(self) -> dict:
        # state_dict() turns NF4 weights back into high precision on CPU, one tensor at a time.
        state_dict = self.model.state_dict()
        lora = self.cfg.model
        adapter = get_adapter_state_dict(state_dict)
        payload = {
            "adapter": adapter,
            "adapter_config": {
                "r": lora.lora_rank,
                "lora_alpha": lora.lora_alpha,
                "lora_dropout": lora.get("lora_dropout", 0.0),
                # "layers.0.attn.q_proj.lora_a.weight" -> "q_proj"
                "target_modules": sorted({key.split(".")[-3] for key in adapter}),
            },
        }
        if not self.cfg.save_adapter_weights_only:
            payload["model"] = get_merged_lora_ckpt(state_dict, rank=lora.lora_rank, alpha=lora.lora_alpha)
        return payload

    def resume_checkpoint_args(self, resume_dir: Path) -> dict:
        # The frozen base comes from the original checkpoint; only the adapter and state are new.
        return {
            "adapter_checkpoint": str(resume_dir),
            "recipe_checkpoint": str(resume_dir / RECIPE_STATE_FILE),
        }


@config.parse(LoRARecipeConfig)
def recipe_main(cfg) -> None:
    recipe = LoRAFinetuneRecipeSingleDevice(cfg)
    recipe.run()


if __name__ == "__main__":
    recipe_main()
