"""A toy recipe for the CLI tests: validates its config, builds its optimizer, writes the config it got.

Each rank writes `<out_dir>/rank<RANK>.yaml`, so a test can count the processes `tune run` started.
"""

import os
import sys
from dataclasses import dataclass, field
from typing import Optional

import torch
from omegaconf import OmegaConf

from torchtune_lite import config
from torchtune_lite.config import Component


@dataclass
class ToyConfig:
    out_dir: str
    optimizer: Component
    a: dict
    c: Optional[int] = None
    steps: int = 1
    tags: list[str] = field(default_factory=list)
    exit_code: int = 0


@config.parse(ToyConfig)
def recipe_main(cfg) -> None:
    optimizer = config.instantiate(cfg.optimizer, [torch.nn.Parameter(torch.zeros(2))])
    written = config.as_config(cfg)  # the settings the recipe got, as YAML
    written.optimizer_class = type(optimizer).__name__
    rank = os.environ.get("RANK", "0")
    with open(os.path.join(cfg.out_dir, f"rank{rank}.yaml"), "w") as f:
        f.write(OmegaConf.to_yaml(written))
    if cfg.exit_code:
        sys.exit(cfg.exit_code)


if __name__ == "__main__":
    recipe_main()
