"""Metric loggers, chosen in the config as `metric_logger._component_`.

Every logger has `log(name, value, step)`, `log_dict(payload, step)`, `log_config(cfg)` and `close()`,
and writes only on rank 0 of a distributed job. Nothing secret is written: config values under keys that
look like credentials (`api_key`, `hf_token`, `secret`, `password`, ...) are replaced by `<redacted>`,
and so is any occurrence of a credential taken from the environment (`WANDB_API_KEY`, `HF_TOKEN`, ...),
for example one interpolated into the config with `${oc.env:HF_TOKEN}`.
"""

from __future__ import annotations

import importlib.util
import json
import netrc
import os
import re
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from torchtune_lite.progress_bars import write_above_bar

REDACTED = "<redacted>"
_SECRET_WORDS = {"key", "pwd", "credential", "credentials"}
# Run-together names (`apikey`, `hftoken`) end in one of these; plain `key` must be a word (not `monkey`).
_SECRET_SUFFIXES = ("apikey", "accesskey", "secretkey", "privatekey", "authkey", "token", "secret", "password", "passwd")
# `pad_token`, `max_tokens`-style names are vocabulary or sizes, not credentials.
_NOT_SECRET_PREFIXES = {"pad", "bos", "eos", "unk", "sep", "cls", "mask", "special", "max", "min", "num", "n", "sort", "primary"}


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name))  # camelCase -> camel_Case
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def is_secret_name(name: str) -> bool:
    """True for names like `api_key`, `WANDB_API_KEY`, `hfToken`, `db_password`; False for `tokenizer`,
    `max_new_tokens`, `pad_token`, `keys`."""
    words = _words(name)
    for i, word in enumerate(words):
        if word in _SECRET_WORDS or word.endswith(_SECRET_SUFFIXES):
            if i > 0 and words[i - 1] in _NOT_SECRET_PREFIXES:
                continue
            return True
    return False


def _environment_secrets() -> list[str]:
    # Short values ("1", "true") would redact half the config; real keys and tokens are long.
    return sorted({v for k, v in os.environ.items() if is_secret_name(k) and len(v) >= 8}, key=len, reverse=True)


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
    return value


def scrub_secrets(text: str) -> str:
    """`text` with any credential found in the environment (W&B, HF, cloud keys...) replaced by <redacted>."""
    return _scrub(text, _environment_secrets())


def redact(cfg: Any, _secrets: Optional[list[str]] = None) -> Any:
    """A plain-container copy of `cfg` (resolved if an OmegaConf config) with credentials replaced."""
    secrets = _environment_secrets() if _secrets is None else _secrets
    if isinstance(cfg, (DictConfig, ListConfig)):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    if isinstance(cfg, Mapping):
        return {
            k: REDACTED if is_secret_name(k) and v is not None else redact(v, secrets) for k, v in cfg.items()
        }
    if isinstance(cfg, (list, tuple)):
        return [redact(v, secrets) for v in cfg]
    return _scrub(cfg, secrets)


def _is_rank_zero() -> bool:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return int(os.environ.get("RANK", 0)) == 0


def _netrc_has_login(host: str) -> bool:
    """Whether ~/.netrc (where `wandb login` stores the key) has an entry for `host`; the key is not read out."""
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _plain(value: Any) -> Any:
    """A JSON/YAML-friendly scalar: 0-dim tensors become Python numbers."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return value


class MetricLogger:
    """Base class: `log` forwards to `log_dict`; `log_config` and `close` do nothing unless overridden."""

    def log(self, name: str, value: float, step: int) -> None:
        self.log_dict({name: value}, step)

    def log_dict(self, payload: Mapping[str, Any], step: int) -> None:
        raise NotImplementedError

    def log_config(self, cfg: DictConfig) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "MetricLogger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class StdoutLogger(MetricLogger):
    """`Step 10 | loss:2.345 lr:0.0002` lines on stdout (rank 0 only)."""

    def __init__(self) -> None:
        self._enabled = _is_rank_zero()

    def log_dict(self, payload: Mapping[str, Any], step: int) -> None:
        if not self._enabled:
            return
        items = " ".join(
            f"{k}:{v:.4g}" if isinstance(v, float) else f"{k}:{v}" for k, v in ((k, _plain(v)) for k, v in payload.items())
        )
        write_above_bar(f"Step {step} | {items}")  # not into the training bar's line


class DiskLogger(MetricLogger):
    """JSON lines in `log_dir/<filename>` (default `metrics.jsonl`): one `{"step": s, "time": t, ...}` line
    per `log_dict`, flushed at once so a crash loses nothing. The file is appended to, so a resumed run
    continues it. `log_config` writes the resolved, redacted config to `log_dir/config.yaml`."""

    def __init__(self, log_dir: str, filename: Optional[str] = None) -> None:
        self.log_dir = Path(log_dir)
        self.path = self.log_dir / (filename or "metrics.jsonl")
        self._file = None
        if _is_rank_zero():
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")

    def log_dict(self, payload: Mapping[str, Any], step: int) -> None:
        if self._file is None:
            return
        secrets = _environment_secrets()
        record = {"step": int(step), "time": time.time()}
        record.update({k: _scrub(_plain(v), secrets) for k, v in payload.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def log_config(self, cfg: DictConfig) -> None:
        if self._file is not None:
            OmegaConf.save(OmegaConf.create(redact(cfg)), self.log_dir / "config.yaml")

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()


class WandBLogger(MetricLogger):
    """Weights & Biases. Without an account set `WANDB_MODE=offline` (files go under `log_dir/wandb`;
    upload later with `wandb sync`). Extra keyword arguments go to `wandb.init`. Only rank 0 logs."""

    def __init__(
        self,
        project: str = "torchtune_lite",
        entity: Optional[str] = None,
        group: Optional[str] = None,
        log_dir: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        self.check_ready(project=project, entity=entity, group=group, log_dir=log_dir, **kwargs)
        import wandb

        self._run = None
        if _is_rank_zero():
            if log_dir:
                Path(log_dir).mkdir(parents=True, exist_ok=True)
            self._run = wandb.run or wandb.init(project=project, entity=entity, group=group, dir=log_dir, **kwargs)
            # Plot everything against our optimizer step, not wandb's own call counter.
            self._run.define_metric("step")
            self._run.define_metric("*", step_metric="step", step_sync=True)

    @staticmethod
    def check_ready(**kwargs: Any) -> None:
        """Refuses to start a run that W&B would stop later: no wandb package, or no way to log (neither
        `WANDB_MODE=offline`/`disabled` nor an API key in `WANDB_API_KEY` or ~/.netrc from `wandb login`)."""
        if importlib.util.find_spec("wandb") is None:
            raise ValueError("metric_logger WandBLogger needs the wandb package: pip install wandb")
        mode = os.environ.get("WANDB_MODE", kwargs.get("mode") or "").lower()
        if mode in ("offline", "disabled", "dryrun") or os.environ.get("WANDB_API_KEY"):
            return
        if _netrc_has_login("api.wandb.ai"):
            return
        raise ValueError(
            "metric_logger WandBLogger has no W&B login: run `wandb login`, set WANDB_API_KEY, "
            "or set WANDB_MODE=offline to log locally (upload later with `wandb sync`)"
        )

    def log_dict(self, payload: Mapping[str, Any], step: int) -> None:
        if self._run is not None:
            secrets = _environment_secrets()
            self._run.log({**{k: _scrub(_plain(v), secrets) for k, v in payload.items()}, "step": int(step)})

    def log_config(self, cfg: DictConfig) -> None:
        if self._run is not None:
            self._run.config.update(redact(cfg), allow_val_change=True)

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


class TensorBoardLogger(MetricLogger):
    """TensorBoard event files in `log_dir` (needs the `tensorboard` package). Only rank 0 writes."""

    def __init__(self, log_dir: str) -> None:
        self.check_ready()
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=log_dir) if _is_rank_zero() else None

    @staticmethod
    def check_ready(**kwargs: Any) -> None:
        if importlib.util.find_spec("tensorboard") is None:
            raise ValueError(
                "metric_logger TensorBoardLogger needs the tensorboard package: pip install 'torchtune_lite[tensorboard]'"
            )

    def log_dict(self, payload: Mapping[str, Any], step: int) -> None:
        if self._writer is not None:
            for name, value in payload.items():
                self._writer.add_scalar(name, _plain(value), global_step=step)

    def log_config(self, cfg: DictConfig) -> None:
        if self._writer is not None:
            self._writer.add_text("config", "```\n" + json.dumps(redact(cfg), indent=2, default=str) + "\n```")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
