"""Full fine-tuning (every weight trains) on one device.

    tune run full_finetune_single_device --config tiny/pretrain

Used to pretrain the bundled tiny base model (see scripts/make_tiny_base.py). The story of the LoRA recipe
with every weight trainable: a resumed run reads the whole model from its last checkpoint, and checkpoints
hold the whole model.
"""


import functools

from torchtune_lite import config
from torchtune_lite.inference.after_training import show_generation
from torchtune_lite.training import finetune


class FullFinetuneRecipeSingleDevice:
    def __init__(self, cfg: finetune.FinetuneConfig) -> None:
        self.cfg, self.world = cfg, finetune.on_one_device(cfg)
        self.training = None

    def setup(self) -> None:
        cfg, world = self.cfg, self.world
        self.start = finetune.open_run(cfg, world, resume_from=finetune.whole_model_from)
        self.data = finetune.load_data(cfg, world, self.start.seed)
        self.model = finetune.build_model(cfg, world, self.start, self.data)  # every weight from the checkpoint, all trainable
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.training = finetune.prepare_training(cfg, world, self.model, self.params, self.data, self.start, self.save_checkpoint)

    def train(self) -> None:
        finetune.run_training(self.world, self.training)
        show_generation(self.cfg, self.world, self.model, self.data)  # generate_after_training

    def save_checkpoint(self, progress: finetune.Progress, end_of_epoch: bool) -> None:
        payload = functools.partial(finetune.model_payload, self.model, self.world)
        finetune.write_checkpoint(self.world, self.start, self.data, self.model, self.training, self.params, payload, progress, end_of_epoch)

    def cleanup(self) -> None:
        finetune.close_run(self.world, self.training)


@config.parse(finetune.FinetuneConfig)
def recipe_main(cfg: finetune.FinetuneConfig) -> None:
    finetune.run_recipe(FullFinetuneRecipeSingleDevice(cfg))


if __name__ == "__main__":
    recipe_main()
