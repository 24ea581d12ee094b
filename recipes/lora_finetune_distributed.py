"""LoRA and QLoRA fine-tuning sharded over processes with FSDP2 (torch.distributed: gloo on CPU, NCCL on GPU).

    tune run --nproc_per_node 2 lora_finetune_distributed --config 7B_qlora
    tune run --nnodes 2 --node_rank 0 --nproc_per_node 8 --rdzv-endpoint host:29500 lora_finetune_distributed --config 70B_qlora

The run is the single-device recipe's story (same config, same checkpoints, same training loop); this file
holds only what distribution changes:
- the model is built on the meta device and sharded layer by layer, then each rank fills in only its own
  shard of every weight, streamed from the checkpoint (no rank holds the whole high-precision model);
- batches come from a `DistributedSampler`, and the loss is weighted by the token count of all ranks;
- to save, every parameter is gathered to rank 0 one at a time (NF4 stays 4-bit) and written by rank 0 in
  the single-device formats, so either recipe resumes from the other's checkpoints.
"""

from dataclasses import dataclass

import torch

from torchtune_lite import config
from torchtune_lite.modules.transformer import TransformerDecoderLayer
from torchtune_lite.recipes.lora_finetune_single_device import LoRAFinetuneRecipeSingleDevice, LoRARecipeConfig
from torchtune_lite.training.distributed import (
    destroy_distributed,
    gather_full_tensor,
    init_distributed,
    long_wait_group,
    materialize_buffers,
    set_collective_timeout,
    shard_model,
)
from torchtune_lite.training.memory import format_memory_stats, get_memory_stats


@dataclass
class DistributedLoRARecipeConfig(LoRARecipeConfig):
    # How long a collective waits for a rank that stopped answering before the job fails.
    collective_timeout_seconds: float = 60.0
    # The same through setup and the first step: ranks finish loading the checkpoint, and compiling
    # the first step, at different times (minutes apart at 70B).
    setup_timeout_seconds: float = 1800.0


class LoRAFinetuneRecipeDistributed(LoRAFinetuneRecipeSingleDevice):
    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.rank, self.world_size = init_distributed(self.device, max(cfg.setup_timeout_seconds, cfg.collective_timeout_seconds))
        self._save_barrier_group = long_wait_group()

    def place_model(self, model: torch.nn.Module) -> None:
        if self.world_size == 1:  # nothing to shard (and torchao's NF4 FSDP hooks fail on a world of one)
            super().place_model(model)
            return
        shard_model(model, (TransformerDecoderLayer,), self.device)
        materialize_buffers(model, self.device)

    def parameters_for_checkpoint(self) -> dict[str, torch.Tensor]:
        # Every rank takes part in each gather; rank 0 keeps the whole tensors (NF4 weights stay 4-bit, so this
        # is the size of the quantized model) and the checkpointer dequantizes them one at a time as it writes.
        state = {}
        for name, param in self.model.named_parameters():
            full = gather_full_tensor(param)
            if self.is_rank_zero:
                state[name] = full
        return state

    def after_first_step(self) -> None:
        set_collective_timeout(self.cfg.collective_timeout_seconds)

    def after_save(self) -> None:
        # The other ranks wait here (not in a training collective, whose timeout is short) while rank 0 writes.
        torch.distributed.barrier(group=self._save_barrier_group)

    def train(self) -> None:
        super().train()
        stats = format_memory_stats(get_memory_stats(self.device))
        print(f"rank {self.rank}: peak memory {stats}", flush=True)

    def cleanup(self) -> None:
        super().cleanup()
        destroy_distributed()


@config.parse(DistributedLoRARecipeConfig)
def recipe_main(cfg) -> None:
    LoRAFinetuneRecipeDistributed(cfg).run()


if __name__ == "__main__":
    recipe_main()
