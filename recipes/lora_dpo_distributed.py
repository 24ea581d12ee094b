"""Preference tuning (DPO, IPO, SimPO) of LoRA and QLoRA adapters sharded over processes with FSDP2.

    tune run --nproc_per_node 2 lora_dpo_distributed --config tiny/qlora_dpo

The single-device preference recipe's story, placed as the distributed LoRA recipe places it: each rank
holds its shard of the base (and of the starting adapter the reference keeps), scores its share of the
pairs, and the loss and metrics are averaged over every rank's pairs.
"""


from dataclasses import dataclass

from torchtune_lite import config
from torchtune_lite.recipes.lora_dpo_single_device import DPORecipeConfig, PreferenceTuning
from torchtune_lite.recipes.lora_finetune_distributed import DistributedLoRARecipeConfig, LoRAFinetuneRecipeDistributed


@dataclass
class DistributedDPORecipeConfig(DPORecipeConfig, DistributedLoRARecipeConfig):
    pass


class LoRADPORecipeDistributed(PreferenceTuning, LoRAFinetuneRecipeDistributed):
    pass


@config.parse(DistributedDPORecipeConfig)
def recipe_main(cfg) -> None:
    LoRADPORecipeDistributed(cfg).run()


if __name__ == "__main__":
    recipe_main()
