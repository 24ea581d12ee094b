"""Tokens/s and peak RSS of our single-device recipe vs torchtune 0.6.1 and HF transformers+peft, side by side.

    bash ../shared/peer/setup.sh --hf            # once: the peers' venvs, weights, data (see its README)
    python benchmarks/qlora_vs_peers.py --repeats 2 [--peers torchtune,hf] [--ours qlora,lora] [--targets all]

Same model (small Llama-2, 58M parameters), weights, tokenizer, data, batch 4 x 256 tokens, LoRA r=8 on q,v
(or, with --targets all, on every linear of attention and MLP, as HF's QLoRA quantizes them all), AdamW,
40 steps, bf16 unless --dtype. Runs alternate (ours, torchtune, hf, ours, ...) because this machine is
noisy: compare ratios within one invocation. Steady-state tokens/s skips the first 5 steps.

It first prints the CPU's ISA and this machine's limit (benchmarks/machine_limit.py: the matmul rate in
the run's dtype at the model's own shapes, and the tokens/s it allows), then each run's tokens/s as a
percentage of it. --baseline DIR also runs our recipe from another checkout (e.g. `git archive COMMIT | tar -x -C DIR`,
with DIR/torchtune_lite/recipes and configs linked to DIR/recipes and configs, as the install maps
them), alternating with the current code, labelled "ours@baseline".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from machine_limit import LlamaShape, device_description, step_limit

ROOT = Path(__file__).resolve().parents[1]
PEER_KIT = Path(os.environ.get("PEER_KIT", ROOT.parent / "shared" / "peer"))
PEER_HOME = Path(os.environ.get("PEER_HOME", Path.home() / ".cache" / "ttl-peer"))
WARM = 5
BATCH, SEQ = 4, 256
SHAPE = LlamaShape(embed_dim=512, num_layers=8, num_heads=8, num_kv_heads=8, intermediate_dim=1376, vocab_size=32000)
ALL_LINEARS = {"ours": ["model.lora_attn_modules=[q_proj,k_proj,v_proj,output_proj]", "model.apply_lora_to_mlp=True"]}
ALL_LINEARS["torchtune"] = ALL_LINEARS["ours"]  # same config keys


def peak_memory_gib(row: dict) -> float:
    """The step's peak from our metric row: resident set on CPU, the allocator's peak on GPU."""
    for key in ("rss_peak", "peak_memory_reserved", "peak_memory_alloc"):
        if key in row:
            return row[key]
    return float("nan")


def run_ours(kind: str, dtype: str, compile_: bool, extra: list[str], code_dir: Path | None = None) -> dict:
    out = PEER_HOME / "runs_ours" / f"{kind}_{dtype}{'_compile' if compile_ else ''}{'_baseline' if code_dir else ''}"
    shutil.rmtree(out, ignore_errors=True)  # the disk logger appends; each run starts clean
    builder = "qlora_llama2" if kind == "qlora" else "lora_llama2"
    cmd = [sys.executable, "-m", "torchtune_lite.cli.tune", "run", "lora_finetune_single_device",
           "--config", str((code_dir or ROOT) / "benchmarks" / "configs" / "small_cpu.yaml"),  # its own: names move
           f"output_dir={out}", f"model._component_=torchtune_lite.models.llama2.{builder}",
           f"dtype={dtype}", f"compile={compile_}", *extra]
    env = {**os.environ, "PEER_HOME": str(PEER_HOME), "PEER_KIT": str(PEER_KIT), "WANDB_MODE": "disabled"}
    if code_dir is not None:  # that checkout's package shadows the installed one (`-m` also puts the cwd first)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code_dir), env.get("PYTHONPATH")]))
    subprocess.run(cmd, check=True, env=env, cwd=code_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
    compile_s = [r["compile_seconds"] for r in rows if "compile_seconds" in r]
    rows = [r for r in rows if "loss" in r]
    steady = rows[WARM:]
    span = steady[-1]["time"] - rows[WARM - 1]["time"]
    # every step of this data set is 4 x 256 tokens
    return {"tokens_per_s": 1024 * len(steady) / span, "peak_rss_gib": max(peak_memory_gib(r) for r in rows),
            "loss": f"{rows[0]['loss']:.3f} -> {rows[-1]['loss']:.3f}", "compile_s": compile_s[0] if compile_s else None}


def run_torchtune(kind: str, dtype: str, compile_: bool, all_linears: bool) -> dict:
    name = f"tt_{kind}_{dtype}{'_compile' if compile_ else ''}"
    subprocess.run([str(PEER_KIT / "run_torchtune.sh"), name, f"model.quantize_base={kind == 'qlora'}",
                    f"dtype={dtype}", f"compile={compile_}", *(ALL_LINEARS["torchtune"] if all_linears else [])], check=True,
                   env={**os.environ, "PEER_HOME": str(PEER_HOME)}, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (PEER_HOME / "runs" / name / "logs" / "steps.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r.get("event") == "step" and "loss" in r]
    span = rows[-1]["t"] - rows[WARM - 1]["t"]
    return {"tokens_per_s": 1024 * (len(rows) - WARM) / span, "peak_rss_gib": max(r["hwm_mb"] for r in rows) / 1024,
            "loss": f"{rows[0]['loss']:.3f} -> {rows[-1]['loss']:.3f}"}


def run_hf(kind: str, dtype: str, all_linears: bool) -> dict:
    log = PEER_HOME / "runs_hf" / f"hf_{kind}_{dtype}.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(PEER_HOME / "hf" / "bin" / "python"), str(PEER_KIT / "hf_bench.py"), "--dtype", dtype, "--out", str(log),
           "--targets", "all" if all_linears else "qv"]
    if kind == "qlora":
        cmd.append("--qlora")
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "PEER_HOME": str(PEER_HOME)})
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"tokens_per_s": summary["tok_s"], "peak_rss_gib": summary["hwm_mb"] / 1024,
            "loss": f"{summary['loss_first']:.3f} -> {summary['loss_last']:.3f}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--ours", default="qlora,lora")
    parser.add_argument("--peers", default="", help="comma list of torchtune,hf")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--targets", default="qv", choices=["qv", "all"], help="LoRA on q,v or on every linear")
    parser.add_argument("--baseline", type=Path, default=None, help="also run our recipe from this checkout")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for our runs")
    args = parser.parse_args()
    all_linears = args.targets == "all"
    ours_extra = [*(ALL_LINEARS["ours"] if all_linears else []), *args.overrides]

    import torch

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    limit = step_limit(SHAPE, BATCH, SEQ, dtype, torch.device("cpu"))
    print(f"{device_description(torch.device('cpu'))}; load average {os.getloadavg()[0]:.1f} at start")
    print(f"limit ({BATCH} x {SEQ} tokens): {limit.describe(dtype)}")

    results: dict[str, list[dict]] = {}
    for _ in range(args.repeats):
        for kind in filter(None, args.ours.split(",")):
            results.setdefault(f"ours {kind} {args.dtype}", []).append(run_ours(kind, args.dtype, args.compile, ours_extra))
            if args.baseline:
                results.setdefault(f"ours@baseline {kind} {args.dtype}", []).append(
                    run_ours(kind, args.dtype, args.compile, ours_extra, code_dir=args.baseline))
        for peer in filter(None, args.peers.split(",")):
            for kind in filter(None, args.ours.split(",")):
                label = f"{peer} {kind} {args.dtype}"
                if peer == "torchtune":
                    run = run_torchtune(kind, args.dtype, args.compile, all_linears)
                else:
                    run = run_hf(kind, args.dtype, all_linears)
                results.setdefault(label, []).append(run)

    print(f"LoRA on {'every linear' if all_linears else 'q,v'}; load average {os.getloadavg()[0]:.1f} at the end")
    print(f"| run | tokens/s (median of {args.repeats}) | % of limit | peak RSS GiB | loss step 1 -> 40 |")
    print("|---|---|---|---|---|")
    for label, runs in results.items():
        tps = statistics.median(r["tokens_per_s"] for r in runs)
        rss = max(r["peak_rss_gib"] for r in runs)
        compile_s = runs[-1].get("compile_s")
        note = f" (first step compiled for {compile_s:.0f} s)" if compile_s is not None else ""
        print(f"| {label} | {tps:.0f} | {limit.percent(tps)} | {rss:.2f} | {runs[-1]['loss']}{note} |")


if __name__ == "__main__":
    main()
