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
from torchtune_lite.data.saved_template import use_saved_template
from torchtune_lite.training.data_loading import build_dataloader, collate_for
from torchtune_lite.training.device import get_device
from torchtune_lite.training.evaluation import evaluate_loss
from torchtune_lite.training.inference_model import load_inference_model
from torchtune_lite.training.precision import get_dtype


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
def recipe_main(cfg) -> None:
    device = get_device(cfg.device)
    dtype = get_dtype(cfg.dtype, device)
    model = load_inference_model(cfg, device=device, dtype=dtype)
    tokenizer = config.instantiate(cfg.tokenizer)
    # score with the chat layout the fine-tune trained with, when its folder saved one (data/saved_template.py)
    use_saved_template(tokenizer, [cfg.checkpointer.get("adapter_checkpoint"), cfg.checkpointer.checkpoint_dir], True)
    dataset = config.instantiate(cfg.dataset, tokenizer)
    collate = collate_for(dataset, tokenizer.pad_id)
    loader, _ = build_dataloader(dataset, batch_size=cfg.batch_size, shuffle=False, seed=0, collate_fn=collate, drop_last=False)
    loss_fn = config.instantiate(cfg.loss) if cfg.loss else None

    result = evaluate_loss(model, loader, device=device, loss_fn=loss_fn, max_batches=cfg.max_batches)
    print(
        f"loss {result.loss:.4f}, perplexity {result.perplexity:.3f} over {result.num_tokens} tokens "
        f"({result.num_batches} batches of up to {cfg.batch_size})",
        flush=True,
    )


if __name__ == "__main__":
    recipe_main()
