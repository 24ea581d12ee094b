"""`tune run --nproc_per_node 2 lora_finetune_distributed`: two gloo processes on CPU, checked against one device.

Per-rank batch 2 on two ranks is the same global batch as batch 4 on one device (the sampler's order is
the same permutation, dealt out to the ranks), so in fp32 the losses and checkpoints must agree.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.recipes.conftest import read_losses, run_tune, save_random_llama, tiny_overrides, tune_command, tune_env

# The tiny config's own shapes (2 layers): NF4 weights of these sizes split evenly over 2 ranks.
SHAPE = dict(vocab_size=1024, num_layers=2, num_heads=8, num_kv_heads=4, embed_dim=256, intermediate_dim=768, max_seq_len=512)
STEPS_PER_EPOCH = 6


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return save_random_llama(tmp_path_factory.mktemp("hf_shardable"), SHAPE)


def overrides(base: Path, output_dir: Path, **extra) -> list[str]:
    # run_val_every_n_steps: the tiny config's held-out set (90 samples) splits evenly over 2 ranks.
    settings = {"epochs": 2, "max_steps_per_epoch": STEPS_PER_EPOCH, "run_val_every_n_steps": 4, **extra}
    return tiny_overrides(base, output_dir, shape=SHAPE, **settings)


def single(base: Path, out: Path, **extra) -> subprocess.CompletedProcess:
    return run_tune("run", "lora_finetune_single_device", "--config", "tiny/qlora", *overrides(base, out, batch_size=4, **extra))


def two_ranks_args(base: Path, out: Path, **extra) -> list[str]:
    return ["run", "--nproc_per_node", "2", "lora_finetune_distributed", "--config", "tiny/qlora", *overrides(base, out, batch_size=2, **extra)]


@pytest.fixture(scope="module")
def runs(base, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    single(base, root / "single")
    run_tune(*two_ranks_args(base, root / "two"))
    return {"single": root / "single", "two": root / "two"}


def val_losses(output_dir: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (output_dir / "logs" / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]


def assert_close_lists(actual: list[float], expected: list[float]) -> None:
    # 1e-5 relative: one device takes the fused output+loss kernel, FSDP-sharded ranks the chunked loss
    # (and the CPU's kernels differ by ISA), so fp32 sums run in other orders; the first step agrees to
    # 1e-6 and 12 steps at lr 1e-2 drift to about 2e-6 relative.
    assert len(actual) == len(expected), (actual, expected)
    for a, e in zip(actual, expected):
        assert a == pytest.approx(e, rel=1e-5), (actual, expected)


def test_two_ranks_match_one_device_step_by_step_and_in_the_checkpoint(runs):
    single_losses, two_losses = read_losses(runs["single"]), read_losses(runs["two"])
    assert len(single_losses) == 2 * STEPS_PER_EPOCH
    assert_close_lists(two_losses, single_losses)
    assert two_losses[-1] < two_losses[0] - 0.5  # it trains
    single_val, two_val = val_losses(runs["single"]), val_losses(runs["two"])
    assert [step for step, _ in single_val] == [4, 8, 12]  # every 4 steps, and after the last one
    assert_close_lists([v for _, v in two_val], [v for _, v in single_val])
    assert single_val[-1][1] < single_val[0][1]
    for pattern in ("model-*.safetensors", "adapter/adapter_model.safetensors"):
        (one_file,), (two_file,) = (list((runs[r] / "epoch_1").glob(pattern)) for r in ("single", "two"))
        one, two = load_file(one_file), load_file(two_file)
        assert one.keys() == two.keys() and len(one) > 0
        for key in one:
            # Gradients summed over ranks differ from one device's in the last fp32 bits; Adam divides by
            # sqrt(v), which magnifies that where a gradient is near zero: 12 steps leave < 2e-5 on weights ~0.1.
            torch.testing.assert_close(two[key], one[key], atol=5e-5, rtol=1e-4)


@pytest.mark.parametrize("first, then", [("two", "single"), ("single", "two")])
def test_each_recipe_resumes_from_the_others_checkpoint(runs, base, tmp_path, first, then):
    out = tmp_path / "out"
    (out / "logs").mkdir(parents=True)
    shutil.copytree(runs[first] / "epoch_0", out / "epoch_0")
    lines = [line for line in (runs[first] / "logs" / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["step"] <= STEPS_PER_EPOCH]
    (out / "logs" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if then == "single":
        single(base, out, resume_from_checkpoint=True)
    else:
        run_tune(*two_ranks_args(base, out, resume_from_checkpoint=True))
    assert_close_lists(read_losses(out), read_losses(runs["single"]))


def _start(args: list[str]) -> subprocess.Popen:
    # The same environment (thread count included) as run_tune: the resumed losses are compared with its runs.
    return subprocess.Popen(tune_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=tune_env())


def _wait_for_steps(out: Path, proc: subprocess.Popen, steps: int, timeout: float = 120) -> None:
    log = out / "logs" / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.is_file() and len(log.read_text().splitlines()) >= steps:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"no {steps} logged steps within {timeout} s")


def test_interrupted_two_rank_run_resumes_to_the_uninterrupted_losses(runs, base, tmp_path):
    out = tmp_path / "out"
    proc = _start(two_ranks_args(base, out))
    _wait_for_steps(out, proc, 1)
    proc.send_signal(signal.SIGTERM)  # to the launcher, which passes it on to both ranks
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert list(out.glob("step_*")), f"no step checkpoint written on SIGTERM: {sorted(p.name for p in out.iterdir())}"
    run_tune(*two_ranks_args(base, out, resume_from_checkpoint=True))
    assert_close_lists(read_losses(out), read_losses(runs["two"]))


def _worker_pids(launcher_pid: int) -> dict[int, int]:
    import psutil

    ranks = {}
    for child in psutil.Process(launcher_pid).children(recursive=True):
        try:
            env = child.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "RANK" in env:
            ranks[int(env["RANK"])] = child.pid
    return ranks


def test_a_rank_that_dies_stops_the_job_with_its_name(base, tmp_path):
    out = tmp_path / "out"
    proc = _start(two_ranks_args(base, out, epochs=50))
    _wait_for_steps(out, proc, 1)
    os.kill(_worker_pids(proc.pid)[1], signal.SIGKILL)
    killed_at = time.monotonic()
    _, stderr = proc.communicate(timeout=90)
    assert time.monotonic() - killed_at < 60
    assert proc.returncode != 0
    assert stderr.strip().splitlines()[-1] == "error: rank 1 was killed by signal 9; the other ranks were stopped (see rank 1's output above)"


def test_a_rendezvous_that_cannot_form_fails_with_one_line(base, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launcher = ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d",
                "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-conf", "join_timeout=3"]
    args = ["run", *launcher, "lora_finetune_distributed", "--config", "tiny/qlora", *overrides(base, tmp_path / "out", batch_size=2)]
    proc = run_tune(*args, check=False, timeout=120)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the distributed job could not form"), proc.stderr


def test_distributed_recipe_refuses_to_run_without_a_launcher(base, tmp_path):
    proc = run_tune("run", "lora_finetune_distributed", "--config", "tiny/qlora", *overrides(base, tmp_path / "o"), check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: the distributed recipe must be started by a launcher")
