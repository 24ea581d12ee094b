import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from torchtune_lite.training.metric_logging import (
    DiskLogger,
    StdoutLogger,
    TensorBoardLogger,
    WandBLogger,
    is_secret_name,
    redact,
)

SECRET = "hf_s3cr3tT0kenValue1234"


def _cfg():
    return OmegaConf.create(
        {
            "output_dir": "/tmp/run",
            "tokenizer": {"_component_": "tok", "path": "/t.model", "max_seq_len": 64},
            "max_new_tokens": 40,
            "optimizer": {"lr": 2e-4},
            "metric_logger": {"api_key": "wandb-abcdef123456", "project": "p"},
            "hub": {"hfToken": "xyz-visible-if-broken", "download_url": "${oc.env:HF_TOKEN}"},
            "db": {"password": None},
        }
    )


def test_secret_names():
    for name in ["api_key", "WANDB_API_KEY", "hf_token", "hfToken", "client_secret", "password", "access_key"]:
        assert is_secret_name(name), name
    for name in ["tokenizer", "max_new_tokens", "pad_token", "keys", "monkey", "num_tokens", "lr"]:
        assert not is_secret_name(name), name


def test_redact_keeps_ordinary_values_and_hides_credentials(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    out = redact(_cfg())
    assert out["tokenizer"] == {"_component_": "tok", "path": "/t.model", "max_seq_len": 64}
    assert out["max_new_tokens"] == 40 and out["optimizer"] == {"lr": 2e-4}
    assert out["metric_logger"] == {"api_key": "<redacted>", "project": "p"}
    assert out["hub"] == {"hfToken": "<redacted>", "download_url": "<redacted>"}  # env secret, harmless key
    assert out["db"] == {"password": None}
    assert SECRET not in json.dumps(out)


def test_disk_logger_writes_flushed_json_lines_and_appends(tmp_path):
    logger = DiskLogger(log_dir=str(tmp_path / "logs"))
    logger.log_dict({"loss": torch.tensor(2.5), "lr": 1e-3}, step=1)
    logger.log("loss", 2.25, step=2)
    lines = (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()  # readable before close
    records = [json.loads(line) for line in lines]
    assert [(r["step"], r["loss"]) for r in records] == [(1, 2.5), (2, 2.25)]
    assert records[0]["lr"] == 1e-3 and "time" in records[0]
    logger.close()

    resumed = DiskLogger(log_dir=str(tmp_path / "logs"))
    resumed.log_dict({"loss": 2.0}, step=3)
    resumed.close()
    steps = [json.loads(x)["step"] for x in (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_disk_logger_saves_redacted_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    logger = DiskLogger(log_dir=str(tmp_path), filename="log.jsonl")
    logger.log_config(_cfg())
    logger.log_dict({"note": f"token is {SECRET}"}, step=0)
    logger.close()
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["optimizer"]["lr"] == 2e-4 and saved["max_new_tokens"] == 40
    assert saved["metric_logger"]["api_key"] == "<redacted>"
    for path in tmp_path.iterdir():
        text = path.read_text()
        assert SECRET not in text and "wandb-abcdef123456" not in text and "xyz-visible" not in text, path.name


def test_only_rank_zero_writes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    logger = DiskLogger(log_dir=str(tmp_path / "logs"))
    logger.log_dict({"loss": 1.0}, step=1)
    logger.log_config(_cfg())
    logger.close()
    assert not (tmp_path / "logs").exists()
    StdoutLogger().log_dict({"loss": 1.0}, step=1)
    assert capsys.readouterr().out == ""


def test_stdout_logger(capsys):
    with StdoutLogger() as logger:
        logger.log_dict({"loss": 2.345678, "tokens": 12, "lr": torch.tensor(0.5)}, step=10)
    assert capsys.readouterr().out == "Step 10 | loss:2.346 tokens:12 lr:0.5\n"


def test_wandb_offline_without_account(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    logger = WandBLogger(project="tt-lite-test", log_dir=str(tmp_path))
    run = logger._run
    logger.log_config(_cfg())
    assert run.config["optimizer"] == {"lr": 2e-4}
    assert run.config["metric_logger"]["api_key"] == "<redacted>"
    logger.log_dict({"loss": 2.5, "grad_norm": torch.tensor(0.75)}, step=1)
    logger.log("loss", 2.0, step=2)
    assert run.summary["loss"] == 2.0 and run.summary["step"] == 2
    logger.close()
    run_dirs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1
    written = [p for p in run_dirs[0].rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in written)
    for path in written:
        data = path.read_bytes()
        assert SECRET.encode() not in data and b"wandb-abcdef123456" not in data, path.name


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed")
def test_tensorboard_missing_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"pip install 'torchtune_lite\[tensorboard\]'"):
        TensorBoardLogger(log_dir=str(tmp_path))
    assert not list(tmp_path.iterdir())


def test_wandb_without_login_or_offline_mode_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc from `wandb login`
    with pytest.raises(ValueError, match="has no W&B login: run `wandb login`, set WANDB_API_KEY, or set WANDB_MODE=offline"):
        WandBLogger(project="tt-lite-test", log_dir=str(tmp_path / "logs"))
    assert not (tmp_path / "logs").exists()
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password not-a-real-key-0000\n")
    (tmp_path / ".netrc").chmod(0o600)
    WandBLogger.check_ready()  # a `wandb login` is enough


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed")
def test_tensorboard_writes_events(tmp_path):
    logger = TensorBoardLogger(log_dir=str(tmp_path))
    logger.log_dict({"loss": 1.0}, step=1)
    logger.close()
    assert list(Path(tmp_path).glob("events.out.tfevents.*"))
