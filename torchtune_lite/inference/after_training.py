"""The generation a fine-tuning run shows when it ends (`generate_after_training: <prompt>`)."""

from __future__ import annotations

from typing import Any

import torch

from torchtune_lite.inference.generation import generate_text
from torchtune_lite.training.compile import uncompiled
from torchtune_lite.training.metric_logging import scrub_secrets
from torchtune_lite.training.world import World


def show_generation(cfg: Any, world: World, model: torch.nn.Module, data: Any) -> None:
    """Greedily completes `cfg.generate_after_training` (if set) with the trained `model`, laid out as the run's
    data set lays out prompts, and prints it on rank 0 (`data`: the run's `RunData`).

    Every rank generates: a sharded model's forward needs all of them (each gathers the layers' weights in turn);
    greedy decoding on the same gathered weights picks the same tokens on every rank, so they stop together."""
    prompt = cfg.generate_after_training
    if not prompt:
        return
    with uncompiled():
        text = generate_text(model, data.tokenizer, prompt, max_new_tokens=cfg.max_new_tokens,
                             instruct_template=getattr(data.dataset, "prompt_format", "alpaca") == "alpaca")
    world.print(f"\nPrompt: {scrub_secrets(prompt)}\nGeneration: {scrub_secrets(text)}\n")
