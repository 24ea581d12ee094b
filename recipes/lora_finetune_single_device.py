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
    model_adapter_config,
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
        model = self.build_model(adapter=checkpoint.get("adapter"))  # the resumed run's adapter, else fresh ones
        self.adapter_params = get_adapter_params(model)
        set_trainable_params(model, self.adapter_params)
        return model

    def trainable_params(self) -> list[torch.nn.Parameter]:
        return list(self.adapter_params.values())

    def checkpoint_payload(self) -> dict:
        # Parameters as they are (NF4 weights stay NF4): the checkpointer dequantizes and merges the
        # adapters one tensor at a time while writing, so saving never holds a high-precision model copy.
        state = self.parameters_for_checkpoint()
        adapter_config = model_adapter_config(self.model)
        if self.cfg.save_adapter_weights_only:
            return {"adapter": get_adapter_state_dict(state), "adapter_config": adapter_config}
        return {"model": state, "adapter_config": adapter_config}

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
