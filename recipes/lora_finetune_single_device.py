"""LoRA and QLoRA fine-tuning on one device (CPU or one GPU).

    tune run lora_finetune_single_device --config 7B_qlora
    tune run lora_finetune_single_device --config tiny/qlora max_steps_per_epoch=20 dtype=fp32

The story of a run, top to bottom in the class below: open the run (output folder, the checkpoint to start or
resume from, the seed), read the data, build the model from the checkpoint with only the LoRA adapters
trainable, build the optimizer and loss, run the shared training loop, and save after every epoch (merged
weights in the input's format, the adapter in PEFT format, and the state needed to resume). The steps are
library functions (torchtune_lite/training/finetune.py); where the processes are is the `World`.
"""

import functools
from dataclasses import dataclass
from typing import Optional

from torchtune_lite import config
from torchtune_lite.inference.after_training import show_generation
from torchtune_lite.training import finetune
from torchtune_lite.training.world import World


@dataclass
class LoRARecipeConfig(finetune.FinetuneConfig):
    save_adapter_weights_only: bool = False


class LoRAFinetuneRecipeSingleDevice:
    """Only the adapters train; the base stays frozen (and in NF4 for QLoRA)."""

    def __init__(self, cfg: LoRARecipeConfig, world: Optional[World] = None) -> None:
        self.cfg, self.world = cfg, world or finetune.on_one_device(cfg)
        self.training = None

    def setup(self) -> None:
        cfg, world = self.cfg, self.world
        # A resumed run reads its adapter and state from its last checkpoint, the frozen base from the original.
        self.start = finetune.open_run(cfg, world, resume_from=finetune.adapter_from)
        self.data = finetune.load_data(cfg, world, self.start.seed)
        # The base from the checkpoint; the adapters from the resumed run, else fresh from the seed.
        self.model = finetune.build_model(cfg, world, self.start, self.data, adapter=self.start.checkpoint.get("adapter"))
        self.params = finetune.train_only_adapters(self.model)
        self.training = finetune.prepare_training(cfg, world, self.model, self.params, self.data, self.start, self.save_checkpoint)

    def train(self) -> None:
        finetune.run_training(self.world, self.training)
        show_generation(self.cfg, self.world, self.model, self.data)  # generate_after_training

    def save_checkpoint(self, progress: finetune.Progress, end_of_epoch: bool) -> None:
        payload = functools.partial(finetune.adapter_payload, self.model, self.world, self.cfg.save_adapter_weights_only)
        finetune.write_checkpoint(self.world, self.start, self.data, self.model, self.training, self.params, payload, progress, end_of_epoch)

    def cleanup(self) -> None:
        finetune.close_run(self.world, self.training)


@config.parse(LoRARecipeConfig)
def recipe_main(cfg: LoRARecipeConfig) -> None:
    finetune.run_recipe(LoRAFinetuneRecipeSingleDevice(cfg))


if __name__ == "__main__":
    recipe_main()
