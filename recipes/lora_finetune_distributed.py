"""LoRA and QLoRA fine-tuning sharded over processes with FSDP2 (torch.distributed: gloo on CPU, NCCL on GPU).

    tune run --nproc_per_node 2 lora_finetune_distributed --config 7B_qlora
    tune run --nnodes 2 --node_rank 0 --nproc_per_node 8 --rdzv-endpoint host:29500 lora_finetune_distributed --config 70B_qlora

The run is the single-device recipe's story (same config, same checkpoints, same training loop), told in a
process group instead of on one device: the class below only starts the single-device story with this rank's
`World` (torchtune_lite/training/world.py), which is where distribution changes it:
- the model is built on the meta device and sharded layer by layer, then each rank fills in only its own
  shard of every weight, streamed from the checkpoint (no rank holds the whole high-precision model);
- batches come from a `DistributedSampler`, and the loss is weighted by the token count of all ranks;
- to save, every parameter is gathered to rank 0 one at a time (NF4 stays 4-bit) and written by rank 0 in
  the single-device formats, so either recipe resumes from the other's checkpoints; the other ranks wait at
  a barrier with a long timeout;
- collectives wait `setup_timeout_seconds` through setup and the first step, then `collective_timeout_seconds`.
"""

from dataclasses import dataclass

from torchtune_lite import config
from torchtune_lite.recipes.lora_finetune_single_device import LoRAFinetuneRecipeSingleDevice, LoRARecipeConfig
from torchtune_lite.training import finetune
from torchtune_lite.training.world import World


@dataclass
class DistributedLoRARecipeConfig(LoRARecipeConfig):
    # How long a collective waits for a rank that stopped answering before the job fails.
    collective_timeout_seconds: float = 60.0
    # The same through setup and the first step: ranks finish loading the checkpoint, and compiling
    # the first step, at different times (minutes apart at 70B).
    setup_timeout_seconds: float = 1800.0


def join_process_group(cfg: DistributedLoRARecipeConfig) -> World:
    """This rank's place in the launcher's process group, with the recipe's collective timeouts."""
    return World.join_process_group(finetune.run_device(cfg), cfg.setup_timeout_seconds, cfg.collective_timeout_seconds)


class LoRAFinetuneRecipeDistributed(LoRAFinetuneRecipeSingleDevice):
    """The single-device story (setup, train, save_checkpoint, cleanup, unchanged) in a process group."""

    def __init__(self, cfg: DistributedLoRARecipeConfig) -> None:
        super().__init__(cfg, world=join_process_group(cfg))


@config.parse(DistributedLoRARecipeConfig)
def recipe_main(cfg: DistributedLoRARecipeConfig) -> None:
    finetune.run_recipe(LoRAFinetuneRecipeDistributed(cfg))


if __name__ == "__main__":
    recipe_main()
