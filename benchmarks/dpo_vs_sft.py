"""DPO QLoRA against SFT QLoRA on the small peer model: tokens/s and peak RSS, paired runs.

    bash ../shared/peer/setup.sh                 # once: the small Llama-2's weights, tokenizer and data
    python benchmarks/dpo_vs_sft.py [--repeats 2] [--steps 12] [--dtype bf16] [--words 120]

The model, weights, tokenizer, LoRA (r=8 on q,v), optimizer and dtype are benchmarks/configs/small_cpu.yaml's
(the ones benchmarks/qlora_vs_peers.py uses). The pairs are made from the peer kit's synthetic Alpaca rows:
each row's instruction is the prompt, its output (cut to `--words` words) the chosen answer, the next row's
output the rejected one. Three runs see the same sequences, in order (no shuffling):
- `sft chosen`: SFT on the chosen sequences, batch B (the SFT a DPO run would follow);
- `dpo`: DPO (adapters-off reference) on the pairs, batch B pairs = 2B sequences;
- `sft chosen+rejected`: SFT on both sequences of every pair, batch 2B: a DPO step's rows, trained as SFT.
The reference model is the policy's own weights, so DPO's peak should exceed `sft chosen`'s by the
activations of the rejected rows only, and equal `sft chosen+rejected`'s; its step does one more forward
(the reference's, without gradients) over the same rows. Tokens/s counts the sequences' real tokens (prompt and
answer, no padding) per second of a step, over the steps after the first `WARM`. Runs alternate
(sft, dpo, sft both, sft, ...) because the machine is shared; each figure is given as min-max over repeats.
Each run also prints the recipe's memory estimate, and its activations part, beside the measured peak.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from torchtune_lite import config

ROOT = Path(__file__).resolve().parents[1]
PEER_KIT = Path(os.environ.get("PEER_KIT", ROOT.parent / "shared" / "peer"))
PEER_HOME = Path(os.environ.get("PEER_HOME", Path.home() / ".cache" / "ttl-peer"))
CONFIG = ROOT / "benchmarks" / "configs" / "small_cpu.yaml"
WARM = 3
_PART = r"^\s+{}\s+([\d,.]+) MiB"
DPO_OVERRIDES = [
    "dataset._component_=torchtune_lite.datasets.preference_dataset", "dataset.prompt_format=alpaca",
    "loss._component_=torchtune_lite.training.PreferenceLoss", "loss.kind=dpo", "loss.beta=0.1",
]


def write_data(folder: Path, words: int, rows_needed: int) -> dict[str, Path]:
    """Pairs, and the same sequences as SFT rows: the chosen ones, and chosen and rejected of each pair in turn."""
    rows = json.loads((PEER_HOME / "alpaca_synth.json").read_text())[: rows_needed + 1]
    cut = [" ".join(row["output"].split()[:words]) for row in rows]
    pairs = [{"prompt": rows[i]["instruction"], "chosen": cut[i], "rejected": cut[i + 1]} for i in range(rows_needed)]
    sft = lambda answer, pair: {"instruction": pair["prompt"], "input": "", "output": pair[answer]}  # noqa: E731
    data = {
        "pairs": pairs,
        "chosen": [sft("chosen", p) for p in pairs],
        "both": [sft(answer, p) for p in pairs for answer in ("chosen", "rejected")],
    }
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, content in data.items():
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(json.dumps(content))
    return paths


def run_kinds(paths: dict[str, Path], batch: int) -> dict[str, tuple[str, list[str], int]]:
    """label -> (recipe, overrides, samples per step)."""
    sft = ["dataset.train_on_input=False"]  # DPO scores the answers only; SFT trains on the same tokens
    return {
        "sft chosen": ("lora_finetune_single_device", [*sft, f"dataset.data_files={paths['chosen']}", f"batch_size={batch}"], batch),
        "dpo": ("lora_dpo_single_device", [*DPO_OVERRIDES, f"dataset.data_files={paths['pairs']}", f"batch_size={batch}"], batch),
        "sft chosen+rejected": ("lora_finetune_single_device",
                                [*sft, f"dataset.data_files={paths['both']}", f"batch_size={2 * batch}"], 2 * batch),
    }


def step_tokens(recipe: str, overrides: list[str], per_step: int, steps: int) -> list[int]:
    """Real tokens (all rows of a step, no padding) of each of the first `steps` steps, in data order."""
    cfg = config.load_config(str(CONFIG), overrides)
    dataset = config.instantiate(cfg.dataset, config.instantiate(cfg.tokenizer))
    if recipe == "lora_dpo_single_device":
        lengths = [len(dataset[i]["chosen_tokens"]) + len(dataset[i]["rejected_tokens"]) for i in range(per_step * steps)]
    else:
        lengths = [len(dataset[i]["tokens"]) for i in range(per_step * steps)]
    return [sum(lengths[k * per_step:(k + 1) * per_step]) for k in range(steps)]


def run(label: str, recipe: str, overrides: list[str], tokens: list[int], common: list[str]) -> dict:
    out = PEER_HOME / "runs_dpo_vs_sft" / label.replace(" ", "_").replace("+", "_")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "torchtune_lite.cli.tune", "run", recipe, "--config", str(CONFIG),
           f"output_dir={out}", *common, *overrides]
    env = {**os.environ, "PEER_HOME": str(PEER_HOME), "PEER_KIT": str(PEER_KIT), "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    seconds = rows[-1]["time"] - rows[WARM - 1]["time"]
    part = lambda name: float(re.search(_PART.format(name), proc.stdout, re.MULTILINE).group(1).replace(",", "")) / 1024  # noqa: E731
    return {
        "tokens_per_s": sum(tokens[WARM:len(rows)]) / seconds,
        "seconds_per_step": seconds / (len(rows) - WARM),
        "peak_rss_gib": max(r["rss_peak"] for r in rows),
        "estimate_gib": part("total"),
        "activations_gib": part("activations"),
    }


def span(values: list[float], fmt: str) -> str:
    low, high = min(values), max(values)
    return format(low, fmt) if low == high else f"{format(low, fmt)}-{format(high, fmt)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4, help="pairs per DPO step (and chosen sequences per SFT step)")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--words", type=int, default=120, help="answers are cut to this many words")
    args = parser.parse_args()
    if args.steps <= WARM:
        raise SystemExit(f"error: --steps {args.steps} leaves no step after the {WARM} warm-up steps: use --steps {WARM + 5} or more")
    if not (PEER_HOME / "alpaca_synth.json").exists():
        raise SystemExit(f"error: {PEER_HOME / 'alpaca_synth.json'} not found: run bash {PEER_KIT / 'setup.sh'} first")

    os.environ.setdefault("PEER_HOME", str(PEER_HOME))  # the config reads both
    os.environ.setdefault("PEER_KIT", str(PEER_KIT))
    paths = write_data(PEER_HOME / "dpo_vs_sft_data", args.words, args.batch * args.steps)
    kinds = run_kinds(paths, args.batch)
    tokens = {label: step_tokens(recipe, overrides, per_step, args.steps) for label, (recipe, overrides, per_step) in kinds.items()}
    common = [f"dtype={args.dtype}", f"max_steps_per_epoch={args.steps}", "shuffle=False", "log_every_n_steps=1"]
    print(f"load average {os.getloadavg()[0]:.1f} at start; {args.dtype}, {args.steps} steps, batch {args.batch} "
          f"(pairs for DPO), mean sequence {sum(tokens['sft chosen+rejected']) / (2 * args.batch * args.steps):.0f} tokens")
    results: dict[str, list[dict]] = {label: [] for label in kinds}
    for repeat in range(args.repeats):
        for label, (recipe, overrides, _) in kinds.items():
            results[label].append(run(label, recipe, overrides, tokens[label], common))
            r = results[label][-1]
            print(f"  round {repeat + 1} {label}: {r['tokens_per_s']:.0f} tokens/s, peak RSS {r['peak_rss_gib']:.3f} GiB", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"| run ({args.dtype}, QLoRA r=8 q,v) | tokens/s (min-max of {args.repeats}) | s/step | peak RSS GiB | "
          "estimate GiB | estimated activations GiB |")
    print("|---|---|---|---|---|---|")
    for label, runs in results.items():
        pick = lambda key: [r[key] for r in runs]  # noqa: E731
        print(f"| {label} | {span(pick('tokens_per_s'), '.0f')} | {statistics.median(pick('seconds_per_step')):.2f} | "
              f"{span(pick('peak_rss_gib'), '.3f')} | {runs[-1]['estimate_gib']:.3f} | {runs[-1]['activations_gib']:.3f} |")
    # Paired within each round: the same machine state for the three runs.
    extra = [d["peak_rss_gib"] - s["peak_rss_gib"] for d, s in zip(results["dpo"], results["sft chosen"])]
    same_rows = [d["peak_rss_gib"] - s["peak_rss_gib"] for d, s in zip(results["dpo"], results["sft chosen+rejected"])]
    speed = [d["tokens_per_s"] / s["tokens_per_s"] for d, s in zip(results["dpo"], results["sft chosen+rejected"])]
    expected = results["dpo"][-1]["activations_gib"] - results["sft chosen"][-1]["activations_gib"]
    print(f"peak RSS, dpo - sft chosen: {span(extra, '+.3f')} GiB (the rejected rows' activations, estimated: {expected:+.3f} GiB); "
          f"dpo - sft chosen+rejected: {span(same_rows, '+.3f')} GiB; dpo tokens/s / sft chosen+rejected's: {span(speed, '.2f')}")


if __name__ == "__main__":
    main()
