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
    parser.add_argument("--smoothing", type=float, default=0.8, help="moving-average weight in [0, 1) for the lines (default 0.8)")
    parser.add_argument("--linear", action="store_true", help="linear loss axis (default: logarithmic)")
    parser.set_defaults(func=main)


def read_metrics(run_dir: Path) -> list[dict]:
    """The JSON records of `run_dir/logs/metrics.jsonl`, in file order (a resumed run appends)."""
    path = run_dir / METRICS_FILE
    if not run_dir.is_dir():
        raise RunLogError(f"run folder {run_dir} does not exist: train it first (it is the config's output_dir) or pass another run")
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


def smooth(values: list[float], weight: float) -> list[float]:
    """Exponential moving average with TensorBoard's debiasing, so the line starts at the first value."""
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**i))
    return out


def series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key`, one per step: where a log repeats a step (a run resumed from a checkpoint
    older than its last logged step), the later record wins, so the line never runs back."""
    by_step = {int(r["step"]): float(r[key]) for r in records if r.get(key) is not None and "step" in r}
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def plot_runs(runs: dict[str, list[dict]], *, smoothing: float = 0.8, log_loss: bool = True):
    """A matplotlib Figure with one panel per metric group present (sharing the step axis), one colour per
    run in every panel; the training loss is drawn as faint raw points under a smoothed line.
    The loss axis is logarithmic (`log_loss`), so later progress stays visible after the first drop."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter

    panels = [(title, keys) for title, keys in PANELS if any(k in r for records in runs.values() for r in records for k in keys)]
    figure = Figure(figsize=(8, 3.2 * len(panels)), layout="constrained")
    axes = figure.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0]
    colours = {name: f"C{i % 10}" for i, name in enumerate(runs)}
    # Earlier runs are drawn wider, so where runs coincide (same schedule, same memory) each stays visible.
    widths = {name: 1.6 + 1.4 * (len(runs) - 1 - i) for i, name in enumerate(runs)}
    for ax, (title, keys) in zip(axes, panels):
        for name, records in runs.items():
            for key in keys:
                steps, values = series(records, key)
                if not steps:
                    continue
                label = name if len(keys) == 1 or key == keys[0] else f"{name} ({key})"
                style = dict(color=colours[name], label=label, linewidth=widths[name])
                if key.startswith("val_") or len(steps) < 3:  # sparse points (validation): marked, nothing to smooth
                    ax.plot(steps, values, linestyle="--" if key.startswith("val_") else "-", marker="o", markersize=4, **style)
                elif title == "loss":  # noisy: faint raw points under the smoothed line
                    ax.plot(steps, values, color=colours[name], alpha=0.25, linewidth=0.8, marker="." if len(steps) < 200 else None, markersize=3)
                    ax.plot(steps, smooth(values, smoothing), **style)
                else:  # learning rate and memory are smooth already: drawn as logged
                    ax.plot(steps, values, alpha=0.85, **style)
        if title == "loss" and log_loss:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    axes[-1].set_xlabel("step")
    return figure


def main(args: argparse.Namespace) -> None:
    runs: dict[str, list[dict]] = {}
    for run_dir in args.runs:
        try:
            runs[_unique_name(run_dir, runs)] = read_metrics(run_dir)
        except RunLogError as err:
            fail(str(err))
    if not 0 <= args.smoothing < 1:
        fail(f"--smoothing {args.smoothing} must be in [0, 1): 0 draws the raw values, 0.9 smooths strongly")
    if args.out.suffix.lower() != ".png":
        fail(f"--out {args.out} must be a .png file")
    if not args.out.parent.is_dir():
        fail(f"folder {args.out.parent} does not exist: create it first")
    figure = plot_runs(runs, smoothing=args.smoothing, log_loss=not args.linear)
    try:
        figure.savefig(args.out, dpi=100)
    except OSError as err:
        fail(f"cannot write {args.out} ({err.strerror or err}): choose a writable --out", code=1)
    print(f"Wrote {args.out} ({len(runs)} run{'s' if len(runs) > 1 else ''})")


def _unique_name(run_dir: Path, taken: dict) -> str:
    name = run_dir.resolve().name
    return name if name not in taken else str(run_dir)
