"""`tune plot <run_dir> [<run_dir> ...] --out curves.png`: loss curves (and val loss, learning rate and
memory where logged) of one or more runs, read from the `logs/metrics.jsonl` that DiskLogger writes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from torchtune_lite.cli._errors import fail

METRICS_FILE = Path("logs") / "metrics.jsonl"
# (panel title, metric keys drawn in it); a panel appears when some run logged one of its keys.
PANELS = (
    ("loss", ("loss", "val_loss")),
    ("learning rate", ("lr",)),
    ("peak memory (GiB)", ("rss_peak", "peak_memory_active", "peak_memory_alloc")),
)


class RunLogError(ValueError):
    """A run folder without a readable metrics log."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plot", help="plot loss (and val loss, lr, memory) of runs: tune plot RUN [RUN ...] --out curves.png")
    parser.add_argument("runs", nargs="+", type=Path, help="run output_dir(s), each holding logs/metrics.jsonl")
    parser.add_argument("--out", type=Path, default=Path("curves.png"), help="PNG file to write (default curves.png)")
    parser.set_defaults(func=main)


def read_metrics(run_dir: Path) -> list[dict]:
    """The JSON records of `run_dir/logs/metrics.jsonl`, in file order (a resumed run appends)."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        raise RunLogError(f"{run_dir} has no {METRICS_FILE}: pass a run's output_dir, trained with metric_logger DiskLogger")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise RunLogError(f"{path} line {number} is not JSON: the log is damaged; fix or remove that line") from None
    if not any("step" in r for r in records):
        raise RunLogError(f"{path} holds no logged steps: the run stopped before its first log line")
    return records


def plot_runs(runs: dict[str, list[dict]]):
    """A matplotlib Figure with one panel per metric group present, one line per run and metric."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    from matplotlib.figure import Figure

    panels = [(title, keys) for title, keys in PANELS if any(k in r for records in runs.values() for r in records for k in keys)]
    figure = Figure(figsize=(7, 3.2 * len(panels)), layout="constrained")
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (title, keys) in zip(axes, panels):
        for name, records in runs.items():
            for key in keys:
                points = [(r["step"], r[key]) for r in records if key in r and "step" in r and r[key] is not None]
                if points:
                    steps, values = zip(*points)
                    label = name if len(keys) == 1 or key == keys[0] else f"{name} ({key})"
                    ax.plot(steps, values, label=label, linestyle="--" if key.startswith("val_") else "-", marker="." if len(points) < 30 else None)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return figure


def main(args: argparse.Namespace) -> None:
    runs: dict[str, list[dict]] = {}
    for run_dir in args.runs:
        try:
            runs[_unique_name(run_dir, runs)] = read_metrics(run_dir)
        except RunLogError as err:
            fail(str(err))
    if args.out.suffix.lower() != ".png":
        fail(f"--out {args.out} must be a .png file")
    if not args.out.parent.is_dir():
        fail(f"folder {args.out.parent} does not exist: create it first")
    plot_runs(runs).savefig(args.out, dpi=100)
    print(f"Wrote {args.out} ({len(runs)} run{'s' if len(runs) > 1 else ''})")


def _unique_name(run_dir: Path, taken: dict) -> str:
    name = run_dir.resolve().name
    return name if name not in taken else str(run_dir)
