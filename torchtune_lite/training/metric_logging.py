"""Metric loggers, chosen in the config as `metric_logger._component_`.

Every logger has `log(name, value, step)`, `log_dict(payload, step)`, `log_config(cfg)` and `close()`.
Configs are redacted before they are written anywhere: values under keys that look like credentials
(key, token, secret, password) never reach a log.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from omegaconf import DictConfig, OmegaConf

_SECRET_KEY = re.compile(r"(api_?key|token|secret|password|passwd|credential)", re.IGNORECASE)
REDACTED = "<redacted>"


def redact(cfg: Any) -> Any:
    """A plain-container copy of `cfg` with credential-like values replaced."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    if isinstance(cfg, Mapping):
        return {k: (REDACTED if _SECRET_KEY.search(str(k)) and v is not None else redact(v)) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [redact(v) for v in cfg]
    return cfg


class MetricLogger:
    def log(self, name: str, value: float, step: int) -> None:
        self.log_dict({name: value}, step)

    def log_dict(self, payload: Mapping[str, float], step: int) -> None:
        raise NotImplementedError

    def log_config(self, cfg: DictConfig) -> None:
        pass

    def close(self) -> None:
        pass


class StdoutLogger(MetricLogger):
    def log_dict(self, payload: Mapping[str, float], step: int) -> None:
        items = " ".join(f"{k}:{v:.4g}" if isinstance(v, float) else f"{k}:{v}" for k, v in payload.items())
        print(f"Step {step} | {items}", flush=True)


class DiskLogger(MetricLogger):
    """One JSON line per `log_dict` call in `log_dir/<filename>` (default `metrics.jsonl`), flushed each time."""

    def __init__(self, log_dir: str, filename: Optional[str] = None) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.log_dir / (filename or "metrics.jsonl")
        self._file = open(self.path, "a", encoding="utf-8")

    def log_dict(self, payload: Mapping[str, float], step: int) -> None:
        self._file.write(json.dumps({"step": step, "time": time.time(), **payload}) + "\n")
        self._file.flush()

    def log_config(self, cfg: DictConfig) -> None:
        OmegaConf.save(OmegaConf.create(redact(cfg)), self.log_dir / "config.yaml")

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class WandBLogger(MetricLogger):
    """Weights & Biases; works without an account with `WANDB_MODE=offline` (sync later with `wandb sync`)."""

    def __init__(
        self,
        project: str = "torchtune_lite",
        entity: Optional[str] = None,
        group: Optional[str] = None,
        log_dir: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        import wandb

        self._rank_zero = int(os.environ.get("RANK", 0)) == 0
        self._run = None
        if self._rank_zero:
            if log_dir:
                Path(log_dir).mkdir(parents=True, exist_ok=True)
            self._run = wandb.run or wandb.init(project=project, entity=entity, group=group, dir=log_dir, **kwargs)
            self._run.define_metric("step")
            self._run.define_metric("*", step_metric="step", step_sync=True)

    def log_dict(self, payload: Mapping[str, float], step: int) -> None:
        if self._run is not None:
            self._run.log({**payload, "step": step})

    def log_config(self, cfg: DictConfig) -> None:
        if self._run is not None:
            self._run.config.update(redact(cfg), allow_val_change=True)

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


class TensorBoardLogger(MetricLogger):
    def __init__(self, log_dir: str) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError("TensorBoardLogger needs the tensorboard package: pip install tensorboard") from err
        self._writer = SummaryWriter(log_dir=log_dir) if int(os.environ.get("RANK", 0)) == 0 else None

    def log_dict(self, payload: Mapping[str, float], step: int) -> None:
        if self._writer is not None:
            for name, value in payload.items():
                self._writer.add_scalar(name, value, global_step=step)

    def log_config(self, cfg: DictConfig) -> None:
        if self._writer is not None:
            self._writer.add_text("config", json.dumps(redact(cfg), indent=2, default=str))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
