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


def test_two_runs_give_one_line_each_per_panel_plus_val_loss(tmp_path):
    a = _write_run(tmp_path / "a", steps=10, val_every=5)
    b = _write_run(tmp_path / "b", steps=6)
    figure = plot_runs({"a": read_metrics(a), "b": read_metrics(b)})
    loss, lr, memory = figure.axes
    assert [ax.get_title() for ax in figure.axes] == ["loss", "learning rate", "peak memory (GiB)"]
    assert len(_lines(loss)) == 3  # a's loss, a's val_loss, b's loss
    assert len(_lines(lr)) == 2 and len(_lines(memory)) == 2
    assert [text.get_text() for text in loss.get_legend().get_texts()] == ["a", "a (val_loss)", "b"]
    assert list(_lines(loss)[1].get_xdata()) == [5, 10]


def test_cli_writes_a_png_that_decodes(tmp_path):
    from matplotlib.image import imread

    _write_run(tmp_path / "a", steps=5)
    _write_run(tmp_path / "b", steps=5, cuda=True)
    out = tmp_path / "curves.png"
    tune.main(["plot", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)])
    image = imread(out)
    assert image.shape == (960, 700, 4)  # 7 x 9.6 inches (3 panels) at 100 dpi, RGBA
    assert image[..., :3].std() > 0.05  # not blank


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "has no logs/metrics.jsonl"),
        ('{"step": 1, "loss": 2.0}\nnot json\n', "line 2 is not JSON"),
        ("", "holds no logged steps"),
    ],
)
def test_unusable_run_folder_is_one_error_line(tmp_path, capsys, content, message):
    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / "logs").mkdir()
        (run / "logs" / "metrics.jsonl").write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        tune.main(["plot", str(run), "--out", str(tmp_path / "c.png")])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "c.png").exists()
