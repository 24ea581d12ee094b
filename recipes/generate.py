"""Generate text from a base model or a fine-tune's output.

    tune run generate --config generation prompt="What does the red wolf eat?"
    tune run generate --config generation checkpointer.checkpoint_dir=runs/tiny_qlora/epoch_2
    tune run generate --config generation checkpointer.adapter_checkpoint=runs/tiny_qlora/epoch_2/adapter

The story: build the model from the checkpoint (merged weights, or base + adapter; see
torchtune_lite/inference/model_loading.py), wrap the prompt in the instruction template used in training,
generate with a KV cache until EOS or `max_new_tokens`, print the answer and the speed.
"""

from dataclasses import dataclass
from typing import Optional

import torch

from torchtune_lite import config
from torchtune_lite.config import Component
from torchtune_lite.inference.generation import complete
from torchtune_lite.inference.model_loading import load_for_inference
from torchtune_lite.training.seed import set_seed


@dataclass
class GenerateConfig:
    model: Component
    tokenizer: Component
    checkpointer: Component
    prompt: str
    instruct_template: bool = True  # wrap the prompt in the Alpaca template the instruction data sets train with
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    seed: Optional[int] = None
    device: str = "auto"
    dtype: str = "auto"


@config.parse(GenerateConfig)
def recipe_main(cfg: GenerateConfig) -> None:
    # a fine-tune's folder says how its prompts were laid out in training: wrapped in the template or not
    loaded = load_for_inference(cfg, instruct_template=cfg.instruct_template)
    tokenizer = loaded.tokenizer
    generator, how = None, "greedy"
    if cfg.temperature > 0:
        seed = set_seed(cfg.seed)  # printed, so a sample drawn with seed=null can be drawn again
        generator, how = torch.Generator(device=loaded.device).manual_seed(seed), f"sampled with seed={seed}"

    result = complete(
        loaded.model, tokenizer, cfg.prompt, max_new_tokens=cfg.max_new_tokens, instruct_template=loaded.instruct_template,
        temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, generator=generator,
    )
    print(result.text, flush=True)
    n = len(result.tokens)
    stop = "EOS" if n and result.tokens[-1] in tokenizer.stop_tokens else f"max_new_tokens={cfg.max_new_tokens}"
    print(
        f"\n{n} tokens in {result.seconds:.2f} s ({n / max(result.seconds, 1e-9):.1f} tokens/s), {how}, stopped at {stop}",
        flush=True,
    )


if __name__ == "__main__":
    recipe_main()
