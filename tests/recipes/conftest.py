"""Recipe tests run the real `tune` CLI on a tiny random Llama-2 saved by Hugging Face transformers: a
launch of several ranks as real processes, a one-process command through `tune`'s `main` in the test's
process (the same code path, without a new interpreter's seconds of imports)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ASSETS = Path(__file__).resolve().parents[2] / "torchtune_lite" / "assets" / "tiny"
TINY = dict(vocab_size=1024, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64, intermediate_dim=128, max_seq_len=256)


def save_random_llama(path: Path, shape: dict) -> Path:
    """A random LlamaForCausalLM (GQA) of `shape` (our builder's names) written with `save_pretrained`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=shape["vocab_size"], hidden_size=shape["embed_dim"], intermediate_size=shape["intermediate_dim"],
        num_hidden_layers=shape["num_layers"], num_attention_heads=shape["num_heads"],
        num_key_value_heads=shape["num_kv_heads"], max_position_embeddings=shape["max_seq_len"],
        rms_norm_eps=1e-5, tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory) -> Path:
    """The tiny random base every recipe test fine-tunes."""
    return save_random_llama(tmp_path_factory.mktemp("hf_base"), TINY)


def tiny_overrides(checkpoint_dir: Path, output_dir: Path, shape: dict = TINY, **extra) -> list[str]:
    """Overrides that turn configs/tiny/qlora.yaml into a fast test run on a random base of `shape`."""
    model = [f"model.{k}={v}" for k, v in shape.items()]
    settings = {
        "checkpointer.checkpoint_dir": checkpoint_dir,
        "output_dir": output_dir,
        "tokenizer.max_seq_len": 64,
        "batch_size": 4,
        "epochs": 1,
        "max_steps_per_epoch": 8,
        "log_every_n_steps": 1,
        "dtype": "fp32",
        "optimizer.lr": 1e-2,
        "lr_scheduler.num_warmup_steps": 0,
        "generate_after_training": "null",
        "overwrite_output_dir": False,
        **extra,
    }
    return model + [f"{k}={v}" for k, v in settings.items()]


TUNE_ENV = {"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def tune_env() -> dict[str, str]:
    """The environment of every `tune` a recipe test starts. The thread count is pinned because fp32 sums
    split over a different number of threads differ in the last bits, and tests compare runs' losses; each
    rank of a distributed run gets the same count (the launcher would otherwise divide the cores). One
    thread, as in-process runs use: the tiny models gain nothing from a second one, two ranks of two
    threads oversubscribe a 2-core machine, and OpenMP threads that spin on busy cores run many times slower."""
    return {**os.environ, **TUNE_ENV}


def tune_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "torchtune_lite.cli.tune", *map(str, args)]


@dataclass
class TuneResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        """stderr without progress (bars, or the one line per finished phase a run without a terminal prints):
        what the user reads when a run stops."""
        return error_lines(self.stderr)


def tune(*args) -> TuneResult:
    """`tune ARGS` in this process, on one thread; the exit code is the one the command would exit with.
    The same code path as a new `tune` process, without its ~5 s of imports."""
    from torchtune_lite.cli.tune import main

    saved_argv, saved_path, saved_threads = sys.argv[:], sys.path[:], torch.get_num_threads()
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        torch.set_num_threads(1)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main([str(a) for a in args])
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
    finally:
        sys.argv[:], sys.path[:] = saved_argv, saved_path
        torch.set_num_threads(saved_threads)
    return TuneResult(code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_tune(*args: str, check: bool = True, timeout: int = 300, new_process: bool = False):
    """`tune ARGS`; raises with its output if `check` and it fails. A launch of several ranks (or
    `new_process`) runs as a real process; one process's commands run in this one (see `tune`)."""
    if new_process or "--nproc_per_node" in args or "--nnodes" in args:
        proc = subprocess.run(tune_command(*args), capture_output=True, text=True, env=tune_env(), timeout=timeout)
    else:
        with _environment(TUNE_ENV):
            proc = tune(*args)
    if check and proc.returncode != 0:
        raise AssertionError(f"tune {' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


# A phase's one line when stderr is not a terminal: `Loading weights: 205k weights in 0.4 s`.
PHASE_LINE = re.compile(r"^[A-Z][\w ]*: \S+ [\w]* ?in \d+\.\d s( \(.*\))?$")


def error_lines(stderr: str) -> list[str]:
    """stderr without progress (tqdm bars, or the line per finished phase): what a user reads when a run stops."""
    return [line for line in stderr.splitlines()
            if line.strip() and "it/s]" not in line and "s/it]" not in line and not PHASE_LINE.match(line)]


def read_losses(output_dir: Path) -> list[float]:
    records = [json.loads(line) for line in (output_dir / "logs" / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]  # validation lines carry only val_loss
