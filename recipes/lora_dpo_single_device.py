"""Preference tuning (DPO, IPO, SimPO) of LoRA and QLoRA adapters on one device.

    tune run lora_dpo_single_device --config tiny/qlora_dpo
    tune run lora_dpo_single_device --config llama2/7B_qlora_dpo start_adapter=runs/sft/epoch_2/adapter

The story is the LoRA recipe's (same model building, checkpoints, resuming, logging and training loop; its
`train`, `save_checkpoint` and `cleanup` run unchanged); what preference tuning changes is the `setup` below:
- the data are pairs (a prompt with a chosen and a rejected answer), batched as chosen rows then
  rejected rows so one forward scores both;
- the reference model is the policy's own weights: the base with the adapters off, or, when the run
  starts from an SFT adapter (`start_adapter`), the base with that adapter (kept as a copy of a few MB);
  no second model is held;
- the step minimises the configured `loss` (`torchtune_lite.training.PreferenceLoss`: dpo, ipo or simpo)
  and logs TRL's metrics (`rewards/chosen`, `rewards/rejected`, `rewards/accuracies`, `rewards/margins`,
  `logps/chosen`, `logps/rejected`) beside the loss.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from torchtune_lite import config
from torchtune_lite.modules.peft import is_adapter_key
from torchtune_lite.recipes.lora_finetune_single_device import LoRAFinetuneRecipeSingleDevice, LoRARecipeConfig
from torchtune_lite.training import finetune
from torchtune_lite.training.preference_step import PreferenceObjective, ReferencePolicy, check_preference_loss
from torchtune_lite.training.weight_loading import load_weights_streaming


@dataclass
class DPORecipeConfig(LoRARecipeConfig):
    # An adapter folder saved by an SFT run (ours or PEFT's): training starts from it, and the reference is
    # the base with it. None: fresh adapters, and the reference is the base alone.
    start_adapter: Optional[str] = None


class LoRADPORecipeSingleDevice(LoRAFinetuneRecipeSingleDevice):
    """Only the adapters train, towards the chosen answers and away from the rejected ones."""

    def setup(self) -> None:
        cfg, world = self.cfg, self.world
        check_preference_loss(cfg.loss)
        self.start = finetune.open_run(cfg, world, resume_from=finetune.adapter_from)
        self.data = finetune.load_data(cfg, world, self.start.seed)
        # Training starts from the SFT adapter when there is one (fresh adapters otherwise): the reference keeps it.
        start_adapter = self.start.checkpointer.load_adapter(Path(cfg.start_adapter).expanduser()) if cfg.start_adapter else None
        self.model = finetune.build_model(cfg, world, self.start, self.data, adapter=start_adapter)
        reference = ReferencePolicy(self.model, from_start_adapter=start_adapter is not None)
        if "adapter" in self.start.checkpoint:  # resuming: the trained adapter replaces the starting one
            load_weights_streaming(self.model, self.start.checkpoint["adapter"].items(), source="adapter",
                                   may_be_missing=lambda key: not is_adapter_key(key))
        self.params = finetune.train_only_adapters(self.model)
        # The step: the preference loss between the policy's and the reference's log-probabilities of each pair.
        objective = PreferenceObjective(config.instantiate(cfg.loss), reference)
        self.training = finetune.prepare_training(cfg, world, self.model, self.params, self.data, self.start, self.save_checkpoint,
                                                  objective=objective)


@config.parse(DPORecipeConfig)
def recipe_main(cfg: DPORecipeConfig) -> None:
    finetune.run_recipe(LoRADPORecipeSingleDevice(cfg))


if __name__ == "__main__":
    recipe_main()
