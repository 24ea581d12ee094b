"""Preference tuning (DPO, IPO, SimPO) of LoRA and QLoRA adapters sharded over processes with FSDP2.

    tune run --nproc_per_node 2 lora_dpo_distributed --config tiny/qlora_dpo

The single-device preference recipe's story, in a process group as the distributed LoRA recipe runs it:
each rank holds its shard of the base (and of the starting adapter the reference keeps), scores its share of
the pairs, and the loss and metrics are averaged over every rank's pairs.
"""

from dataclasses import dataclass

from torchtune_lite import config
from torchtune_lite.recipes.lora_dpo_single_device import DPORecipeConfig, LoRADPORecipeSingleDevice
from torchtune_lite.recipes.lora_finetune_distributed import DistributedLoRARecipeConfig, join_process_group
from torchtune_lite.training import finetune


@dataclass
class DistributedDPORecipeConfig(DPORecipeConfig, DistributedLoRARecipeConfig):
    pass


class LoRADPORecipeDistributed(LoRADPORecipeSingleDevice):
    """The single-device preference story in a process group."""

    def __init__(self, cfg: DistributedDPORecipeConfig) -> None:
        super().__init__(cfg, world=join_process_group(cfg))


@config.parse(DistributedDPORecipeConfig)
def recipe_main(cfg: DistributedDPORecipeConfig) -> None:
    finetune.run_recipe(LoRADPORecipeDistributed(cfg))


if __name__ == "__main__":
    recipe_main()
