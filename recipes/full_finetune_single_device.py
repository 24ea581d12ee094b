"""Full fine-tuning (every weight trains) on one device.

    tune run full_finetune_single_device --config tiny/pretrain

Used to pretrain the bundled tiny base model (see scripts/make_tiny_base.py). Same story as the LoRA
recipe; only the model setup differs: all parameters train and checkpoints hold the whole model.
"""

import torch

from torchtune_lite import config
from torchtune_lite.training.finetune import FinetuneConfig, FinetuneRecipe


class FullFinetuneRecipeSingleDevice(FinetuneRecipe):
    def setup_model(self, checkpoint: dict) -> torch.nn.Module:
        return self.build_model()

    def trainable_params(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]


@config.parse(FinetuneConfig)
def recipe_main(cfg) -> None:
    FullFinetuneRecipeSingleDevice(cfg).run()


if __name__ == "__main__":
    recipe_main()
