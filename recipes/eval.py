"""Loss and perplexity of a checkpoint on a local data set.

    tune run eval --config eval
    tune run eval --config eval checkpointer.checkpoint_dir=runs/tiny_qlora/epoch_2
    tune run eval --config eval checkpointer.adapter_checkpoint=runs/tiny_qlora/epoch_2/adapter

The story: build the model from the checkpoint (as `tune run generate` does), tokenize the data set with
the training data components, and score every trained-on token with the training loss.
"""

from dataclasses import dataclass
from typing import Optional

from torchtune_lite import config
from torchtune_lite.config import Component
from torchtune_lite.inference.model_loading import load_for_inference
from torchtune_lite.training.data_loading import build_dataloader, collate_for
from torchtune_lite.training.evaluation import evaluate_loss


@dataclass
class EvalConfig:
    model: Component
    tokenizer: Component
    checkpointer: Component
    dataset: Component
    loss: Optional[Component] = None
    batch_size: int = 8
    max_batches: Optional[int] = None  # score only the first N batches
    device: str = "auto"
    dtype: str = "auto"


@config.parse(EvalConfig)
def recipe_main(cfg: EvalConfig) -> None:
    # scored with the chat layout the fine-tune trained with, when its folder saved one
    loaded = load_for_inference(cfg)
    dataset = config.instantiate(cfg.dataset, loaded.tokenizer)
    collate = collate_for(dataset, loaded.tokenizer.pad_id)
    loader, _ = build_dataloader(dataset, batch_size=cfg.batch_size, shuffle=False, seed=0, collate_fn=collate, drop_last=False)
    loss_fn = config.instantiate(cfg.loss) if cfg.loss else None

    result = evaluate_loss(loaded.model, loader, device=loaded.device, loss_fn=loss_fn, max_batches=cfg.max_batches)
    print(
        f"loss {result.loss:.4f}, perplexity {result.perplexity:.3f} over {result.num_tokens} tokens "
        f"({result.num_batches} batches of up to {cfg.batch_size})",
        flush=True,
    )


if __name__ == "__main__":
    recipe_main()
