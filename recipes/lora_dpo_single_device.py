"""Preference tuning (DPO, IPO, SimPO) of LoRA and QLoRA adapters on one device.

    tune run lora_dpo_single_device --config tiny/qlora_dpo
    tune run lora_dpo_single_device --config llama2/7B_qlora_dpo start_adapter=runs/sft/epoch_2/adapter

The story is the LoRA recipe's (same model building, checkpoints, resuming, logging and training loop);
what preference tuning changes:
- the data are pairs (a prompt with a chosen and a rejected answer), batched as chosen rows then
  rejected rows so one forward scores both;
- the reference model is the policy's own weights: the base with the adapters off, or, when the run
  starts from an SFT adapter (`start_adapter`), the base with that adapter (kept as a copy of a few MB);
  no second model is held;
- the step minimises the configured `loss` (`torchtune_lite.training.PreferenceLoss`: dpo, ipo or simpo)
  and logs TRL's metrics (`rewards/chosen`, `rewards/rejected`, `rewards/accuracies`, `rewards/margins`,
  `logps/chosen`, `logps/rejected`) beside the loss.
"""


import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from torchtune_lite import config
from torchtune_lite.modules.peft import get_adapter_params, is_adapter_key, set_trainable_params
from torchtune_lite.recipes.lora_finetune_single_device import LoRAFinetuneRecipeSingleDevice, LoRARecipeConfig
from torchtune_lite.training.compile import compile_loss
from torchtune_lite.training.loss import ChunkedCrossEntropyLoss
from torchtune_lite.training.preference_loss import PreferenceLoss
from torchtune_lite.training.preference_step import PreferenceObjective, ReferencePolicy
from torchtune_lite.training.weight_loading import load_weights_streaming


@dataclass
class DPORecipeConfig(LoRARecipeConfig):
    # An adapter folder saved by an SFT run (ours or PEFT's): training starts from it, and the reference is
    # the base with it. None: fresh adapters, and the reference is the base alone.
    start_adapter: Optional[str] = None


class PreferenceTuning:
    """What preference tuning changes in a LoRA recipe; mixed into the single-device and distributed ones."""

    def setup_model(self, checkpoint: dict) -> torch.nn.Module:
        start = self.checkpointer.load_adapter(Path(self.cfg.start_adapter).expanduser()) if self.cfg.start_adapter else None
        model = self.build_model(adapter=start)  # fresh adapters when there is no starting one
        self.reference = ReferencePolicy(model, from_start_adapter=start is not None)
        if "adapter" in checkpoint:  # resuming: the trained adapter replaces the starting one
            load_weights_streaming(model, checkpoint["adapter"].items(), source="adapter",
                                   may_be_missing=lambda key: not is_adapter_key(key))
        self.adapter_params = get_adapter_params(model)
        set_trainable_params(model, self.adapter_params)
        return model

    def setup(self) -> None:
        super().setup()
        if not isinstance(self.loss_fn, PreferenceLoss):
            raise ValueError(
                f"loss {self.cfg.loss._component_ if self.cfg.loss else None} is not a preference loss: "
                "set loss._component_=torchtune_lite.training.PreferenceLoss (kind: dpo, ipo or simpo)"
            )
        token_loss = ChunkedCrossEntropyLoss()
        objective = PreferenceObjective(self.loss_fn, self.reference, compile_loss(token_loss) if self.compiled else token_loss)
        self.loop.forward = objective
        self.loop.extra_metrics = functools.partial(objective.pop_metrics, self.world_size)

    def _estimate_memory(self, runtime_rss: int):
        # A step holds both answers of each pair: two rows per sample, each as long as the pair's longer sequence.
        pairs = [self.dataset[i] for i in range(min(len(self.dataset), 512))]
        lengths = [max(len(p["chosen_tokens"]), len(p["rejected_tokens"])) for p in pairs]
        return super()._estimate_memory(runtime_rss, lengths=lengths, rows_per_sample=2)


class LoRADPORecipeSingleDevice(PreferenceTuning, LoRAFinetuneRecipeSingleDevice):
    """Only the adapters train, towards the chosen answers and away from the rejected ones."""


@config.parse(DPORecipeConfig)
def recipe_main(cfg) -> None:
    LoRADPORecipeSingleDevice(cfg).run()


if __name__ == "__main__":
    recipe_main()
