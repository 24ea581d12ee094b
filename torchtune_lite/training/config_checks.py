"""The checks a fine-tuning config must pass before a run builds anything.

`FinetuneConfig.check_values` calls `check_finetune_config`, and `config.validate` calls that for the
recipe's schema, so `tune validate` and `tune run` refuse the same configs with the same one-line error:
values out of range, unknown enum values, LoRA module names, files that do not exist, a checkpoint folder
the checkpointer cannot read, a metric logger whose package or credentials are missing, and an output
folder that cannot be written or already holds a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig

from torchtune_lite import config
from torchtune_lite.config import ConfigError
from torchtune_lite.config._errors import did_you_mean
from torchtune_lite.data.columns import check_column_map
from torchtune_lite.data.file_loading import check_data_files
from torchtune_lite.modules.peft import LORA_ATTN_MODULES
from torchtune_lite.training.device import check_device_name
from torchtune_lite.training.output_dir import check_output_dir
from torchtune_lite.training.precision import check_dtype_name

# key -> the smallest value it may take (None is allowed where the schema says Optional).
MINIMUMS = {
    "batch_size": 1,
    "epochs": 1,
    "gradient_accumulation_steps": 1,
    "log_every_n_steps": 1,
    "max_steps_per_epoch": 1,
    "save_every_n_steps": 1,
    "run_val_every_n_steps": 1,
    "max_val_batches": 1,
    "max_new_tokens": 1,
}


def check_finetune_config(cfg: DictConfig) -> None:
    """Raises ConfigError (a value) or FileNotFoundError/FileExistsError (a file) for what the run would refuse."""
    check_minimums(cfg, MINIMUMS)
    if cfg.get("clip_grad_norm") is not None and cfg.clip_grad_norm <= 0:
        raise ConfigError(f"clip_grad_norm={cfg.clip_grad_norm} must be positive: pass a norm such as 1.0, or null to not clip")
    check_dtype_name(cfg.dtype)
    check_device_name(cfg.device)
    check_lora_modules(cfg.model)
    check_component_files(cfg)
    if cfg.dataset.get("streaming") and cfg.get("max_steps_per_epoch") is None:
        raise ConfigError("dataset.streaming=True reads a stream of unknown length: set max_steps_per_epoch to the steps an epoch runs")
    config.instantiate(cfg.checkpointer)  # reads config.json and finds the weight files; loads no weights
    check_metric_logger(cfg.get("metric_logger"))
    log_dir = cfg.metric_logger.get("log_dir") if cfg.get("metric_logger") else None
    check_output_dir(Path(cfg.output_dir), resume=cfg.resume_from_checkpoint, overwrite=cfg.overwrite_output_dir)
    if log_dir:
        check_output_dir(Path(log_dir), resume=True, overwrite=False, key="metric_logger.log_dir")


def check_minimums(cfg: DictConfig, minimums: dict[str, float]) -> None:
    for key, smallest in minimums.items():
        value = cfg.get(key)
        if value is not None and value < smallest:
            raise ConfigError(f"{key}={value} is out of range: it must be at least {smallest}")


def check_lora_modules(model: DictConfig) -> None:
    modules = model.get("lora_attn_modules")
    if modules is None:
        return
    if isinstance(modules, str) or not isinstance(modules, (list, ListConfig)):
        raise ConfigError(f"model.lora_attn_modules must be a list, got {modules!r}: write [{modules}]")
    for name in modules:
        if name not in LORA_ATTN_MODULES:
            raise ConfigError(
                f"model.lora_attn_modules: unknown module '{name}'{did_you_mean(name, LORA_ATTN_MODULES)}: "
                f"choose from {', '.join(LORA_ATTN_MODULES)}"
            )


def check_component_files(cfg: DictConfig) -> None:
    """The tokenizer file and local data files the run reads exist."""
    path = cfg.tokenizer.get("path")
    if isinstance(path, str) and not Path(path).expanduser().exists():
        raise FileNotFoundError(f"tokenizer.path {path} does not exist: point it at the checkpoint's tokenizer file")
    for key in ("dataset", "dataset_val"):
        node: Optional[DictConfig] = cfg.get(key)
        if node is not None and node.get("data_files") is not None:
            check_data_files(node.get("source", "json"), node.data_files, key=f"{key}.data_files")
        if node is not None and "column_map" in node:  # `{output:instances}` parses to {"output:instances": None}
            check_column_map(node.column_map, None, key=f"{key}.column_map")


def check_metric_logger(node: Optional[DictConfig]) -> None:
    """A logger that can tell it would fail (a missing package, no credentials) says so now, not after the
    model is built: loggers may define `check_ready(**kwargs)`."""
    if node is None:
        return
    logger = config.import_component(node._component_, where="metric_logger._component_")
    check_ready: Any = getattr(logger, "check_ready", None)
    if check_ready is not None:
        check_ready(**{k: v for k, v in node.items() if k != "_component_"})
