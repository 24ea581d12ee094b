"""`tune plot`: the figure's lines per run, the PNG it writes, and one-line errors for unusable run folders."""

import json

import pytest
from matplotlib.lines import Line2D

from torchtune_lite.cli import tune
from torchtune_lite.cli.plot import plot_runs, read_metrics


def _write_run(run_dir, steps: int, val_every: int = 0, cuda: bool = False):
    (run_dir / "logs").mkdir(parents=True)
    lines = []
    for step in range(1, steps + 1):
        record = {"step": step, "time": 0.0, "loss": 3.0 / step, "lr": 1e-3, "tokens_per_second": 100.0}
        record.update({"peak_memory_active": 1.5} if cuda else {"rss_peak": 0.4 + step / 100, "rss_current": 0.4})
        lines.append(json.dumps(record))
        if val_every and step % val_every == 0:
            lines.append(json.dumps({"step": step, "time": 0.0, "val_loss": 3.5 / step}))
    (run_dir / "logs" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run_dir


def _lines(ax) -> list[Line2D]:
    return [child for child in ax.get_children() if isinstance(child, Line2D)]


def _labelled(ax) -> dict[str, Line2D]:
    return {line.get_label(): line for line in _lines(ax) if not line.get_label().startswith("_")}


def test_two_runs_one_colour_each_in_every_panel_smoothed_over_raw_points(tmp_path):
    a = _write_run(tmp_path / "a", steps=10, val_every=5)
    b = _write_run(tmp_path / "b", steps=6)
    figure = plot_runs({"a": read_metrics(a), "b": read_metrics(b)}, smoothing=0.5)
    loss, lr, memory = figure.axes
    assert [ax.get_title() for ax in figure.axes] == ["loss", "learning rate", "peak memory (GiB)"]
    assert loss.get_yscale() == "log" and lr.get_yscale() == "linear"
    assert loss.get_shared_x_axes().joined(loss, memory)  # one step axis for every panel
    assert [text.get_text() for text in loss.get_legend().get_texts()] == ["a", "a (val_loss)", "b"]
    # Per run's loss: the raw points (faint, unlabelled) and the smoothed line over them; lr and memory as logged.
    assert len(_lines(loss)) == 2 + 1 + 2 and len(_lines(lr)) == 2 and len(_lines(memory)) == 2
    assert _labelled(lr)["a"].get_linewidth() > _labelled(lr)["b"].get_linewidth()  # coinciding lines both show
    raw_a = next(line for line in _lines(loss) if line.get_label().startswith("_") and len(line.get_xdata()) == 10)
    assert list(raw_a.get_ydata()) == pytest.approx([3.0 / s for s in range(1, 11)])
    smoothed = list(_labelled(loss)["a"].get_ydata())
    assert smoothed[0] == pytest.approx(3.0) and smoothed[1] == pytest.approx((0.5 * 3.0 + 1.5) / 1.5)  # debiased EMA
    assert list(_labelled(loss)["a (val_loss)"].get_xdata()) == [5, 10]
    for ax in figure.axes:  # a run keeps its colour in every panel
        colours = {line.get_label().split()[0]: line.get_color() for line in _labelled(ax).values()}
        assert colours["a"] != colours["b"]
        assert colours == {"a": _labelled(loss)["a"].get_color(), "b": _labelled(loss)["b"].get_color()}


def test_a_resumed_log_that_repeats_steps_draws_each_step_once(tmp_path):
    run = _write_run(tmp_path / "a", steps=6)
    with open(run / "logs" / "metrics.jsonl", "a") as f:  # resumed from step 4: steps 5 and 6 again
        for step in (5, 6):
            f.write(json.dumps({"step": step, "loss": 9.0}) + "\n")
    loss = plot_runs({"a": read_metrics(run)}, smoothing=0.0).axes[0]
    assert list(_labelled(loss)["a"].get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert list(_labelled(loss)["a"].get_ydata())[-2:] == [9.0, 9.0]


def test_cli_writes_a_png_that_decodes(tmp_path):
    from matplotlib.image import imread

    _write_run(tmp_path / "a", steps=5)
    _write_run(tmp_path / "b", steps=5, cuda=True)
    out = tmp_path / "curves.png"
    tune.main(["plot", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)])
    image = imread(out)
    assert image.shape == (960, 800, 4)  # 8 x 9.6 inches (3 panels) at 100 dpi, RGBA
    assert image[..., :3].std() > 0.05  # not blank


def test_an_unwritable_out_is_one_error_line(tmp_path, capsys):
    _write_run(tmp_path / "a", steps=3)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        tune.main(["plot", str(tmp_path / "a"), "--out", str(tmp_path / "file" / "c.png")])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "does not exist" in err or "cannot write" in err


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "has no logs/metrics.jsonl"),
        ("missing-folder", "does not exist: train it first"),
        ('{"step": 1, "loss": 2.0}\nnot json\n', "line 2 is not JSON"),
        ("", "holds no logged steps"),
    ],
)
def test_unusable_run_folder_is_one_error_line(tmp_path, capsys, content, message):
    run = tmp_path / "run"
    if content != "missing-folder":
        run.mkdir()
    if content not in (None, "missing-folder"):
        (run / "logs").mkdir()
        (run / "logs" / "metrics.jsonl").write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        tune.main(["plot", str(run), "--out", str(tmp_path / "c.png")])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "c.png").exists()
