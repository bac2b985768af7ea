"""The pictures (utils/run_plots.py, tools/plot_runs.py) and the metrics.json reading behind them
(utils/run_records.py): the drawn lines and bars carry the numbers of the records, the PNG shows
the bars, resumed epochs count once, and a missing matplotlib is one line."""

import json
import os
import sys

import numpy as np
import pytest

from tools import plot_runs
from utils import run_plots, run_records, stats


def train(epoch, it, step, total, tri=1.0):
    return {
        "type": "train",
        "epoch": epoch,
        "iter": it,
        "step": step,
        "loss_total": total,
        "loss_tri": tri,
        "acc_ori": 0.5,
    }


def test_eval(epoch, maps, split="test", setting="full"):
    return {
        "type": "eval",
        "split": split,
        "epoch": epoch,
        "setting": setting,
        "results": {str(p): {"mAP": m, "R1": m, "mINP": m} for p, m in maps.items()},
    }


test_eval.__test__ = False  # a record builder, not a test


def run_records_of(offset):
    """Two epochs of 4 iterations, logged at iterations 2 and 4, and a test evaluation after
    each; `offset` shifts every value."""
    return [
        train(1, 2, 2, 4.0 + offset),
        train(1, 4, 4, 3.0 + offset),
        test_eval(1, {1: 10.0 + offset, 3: 20.0 + offset}),
        train(2, 2, 6, 2.0 + offset),
        train(2, 4, 8, 1.0 + offset),
        test_eval(2, {1: 30.0 + offset, 3: 40.0 + offset}),
    ]


def test_loss_curves_weight_windows_and_resumed_epochs_count_once():
    recs = [
        train(1, 3, 3, 4.0),
        train(1, 4, 4, 8.0),  # windows of 3 and 1 iterations
        train(2, 2, 6, 100.0),  # epoch 2, then killed ...
        train(2, 2, 6, 2.0),
        train(2, 4, 8, 2.0),  # ... and redone after the resume
        test_eval(2, {3: 50.0}),
        test_eval(2, {3: 55.0}),
    ]
    curves = run_records.loss_curves(recs)
    assert curves["loss_total"] == {1: pytest.approx((3 * 4.0 + 1 * 8.0) / 4), 2: 2.0}
    assert set(curves) == {"loss_total", "loss_tri"}  # acc_* are not losses
    assert run_records.eval_curves(recs) == {"test": {3: {2: 55.0}}}
    assert run_records.final_test(recs, 2) == {3: {"mAP": 55.0, "R1": 55.0, "mINP": 55.0}}
    assert run_records.final_test(recs, 3) is None


def test_curves_keep_the_full_setting_of_todays_and_older_records():
    """A missing-modality evaluation of the same epoch is a setting of its own: not part of the
    learning curve, and not a redo of the full one. Records written before settings were named
    carry DeMo's letters ("miss") instead."""
    old_full = {k: v for k, v in test_eval(1, {3: 20.0}).items() if k != "setting"}
    old_miss = {**test_eval(1, {3: 5.0}), "miss": "r"}
    del old_miss["setting"]
    recs = [
        {**old_full, "miss": "none"},
        old_miss,
        test_eval(2, {3: 40.0}),
        test_eval(2, {3: 7.0}, setting="query_NI+TI_gallery_NI+TI"),
    ]
    assert run_records.eval_curves(recs) == {"test": {3: {1: 20.0, 2: 40.0}}}
    assert [run_records.setting(r) for r in recs] == [
        "full",
        "miss r",
        "full",
        "query_NI+TI_gallery_NI+TI",
    ]
    assert len(run_records.latest(recs)) == 4


def test_torn_last_line_is_skipped(tmp_path):
    lines = [json.dumps(train(1, 1, 1, 1.0)), '{"type": "train", "ep']
    (tmp_path / "metrics.json").write_text("\n".join(lines))
    assert len(run_records.read_records(str(tmp_path))) == 1


def lines_by_gid(ax):
    return {line.get_gid(): line for line in ax.get_lines()}


def test_learning_curves_draw_every_run_and_the_bold_mean():
    groups = {"DeMo": [run_records_of(0), run_records_of(2)], "SDTPS": [run_records_of(10)]}
    fig = run_plots.learning_curves(groups)
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_visible() and ax.get_title()}
    assert list(axes) == ["loss_total", "loss_tri", "test mAP, pattern 1", "test mAP, pattern 3"]
    ax = axes["test mAP, pattern 3"]
    lines = lines_by_gid(ax)
    assert set(lines) == {"DeMo|run0", "DeMo|run1", "DeMo|mean", "SDTPS|run0", "SDTPS|mean"}
    assert list(lines["DeMo|run1"].get_xdata()) == [1, 2]
    assert list(lines["DeMo|run1"].get_ydata()) == [22.0, 42.0]
    assert list(lines["DeMo|mean"].get_ydata()) == [21.0, 41.0]  # mean of the two seeds
    assert list(lines["SDTPS|mean"].get_ydata()) == [30.0, 50.0]
    # One colour per config, the mean bold.
    assert (
        lines["DeMo|run0"].get_color()
        == lines["DeMo|mean"].get_color()
        != lines["SDTPS|mean"].get_color()
    )
    assert lines["DeMo|mean"].get_linewidth() > 2 * lines["DeMo|run0"].get_linewidth()
    loss = lines_by_gid(axes["loss_total"])
    assert list(loss["DeMo|mean"].get_ydata()) == [pytest.approx(4.5), pytest.approx(2.5)]


def test_interval_bars_heights_intervals_and_the_png(tmp_path):
    values = {"DeMo": [70.0, 72.0, 74.0], "SDTPS": [60.0, 61.0, 65.0]}
    data = {g: {3: {**stats.summary(v), "values": v}} for g, v in values.items()}
    fig = run_plots.interval_bars(data)
    (ax,) = fig.axes
    bars = {p.get_gid(): p for p in ax.patches}
    assert bars["DeMo|p3"].get_height() == pytest.approx(72.0)
    assert bars["SDTPS|p3"].get_height() == pytest.approx(62.0)
    # error bars from the 95 % interval: 72 -+ t(0.975, 2) * 2 / sqrt(3) = 72 -+ 4.968
    from matplotlib.container import BarContainer

    demo_bars = next(
        c
        for c in ax.containers
        if isinstance(c, BarContainer) and c.patches[0].get_gid() == "DeMo|p3"
    )
    (seg,) = demo_bars.errorbar.lines[2][0].get_segments()
    assert [y for _, y in seg] == pytest.approx([72 - 4.968275, 72 + 4.968275], abs=1e-5)
    dots = lines_by_gid(ax)["DeMo|runs"]
    assert list(dots.get_ydata()) == values["DeMo"]
    assert ax.get_ylim()[0] > 0  # zoomed on the data
    path = run_plots.save(fig, str(tmp_path / "bars.png"))
    # The file shows the bars: a pixel inside the SDTPS bar (beside its error bar, at the centre)
    # has the bar's colour; the transform is the saved layout's.
    import matplotlib.colors as mcolors
    import matplotlib.image as mimage

    png = mimage.imread(path)
    b = bars["SDTPS|p3"]
    x, y = ax.transData.transform(
        (b.get_x() + b.get_width() / 4, (ax.get_ylim()[0] + b.get_height()) / 2)
    )
    pixel = png[int(round(png.shape[0] - y)), int(round(x)), :3]
    want = 0.8 * np.array(mcolors.to_rgb(b.get_facecolor()[:3])) + 0.2  # alpha 0.8 on white
    assert pixel == pytest.approx(want, abs=0.02)


def write_run(folder, records, finished=True, max_epochs=2):
    os.makedirs(folder)
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        f.write(f"SOLVER:\n  MAX_EPOCHS: {max_epochs}\n")
    if finished:
        open(os.path.join(folder, "model_final.pth"), "wb").close()


def test_plot_runs_groups_seed_folders(tmp_path, monkeypatch, capsys):
    study = tmp_path / "study"
    write_run(str(study / "RGBNT201-DeMo" / "seed_1"), run_records_of(0))
    write_run(str(study / "RGBNT201-DeMo" / "seed_2"), run_records_of(2))
    write_run(str(study / "RGBNT201-DeMo" / "seed_2" / "best_test"), run_records_of(50))
    write_run(str(tmp_path / "single"), run_records_of(5), finished=False)
    drawn = {}
    real_curves, real_bars = run_plots.learning_curves, run_plots.interval_bars
    monkeypatch.setattr(
        plot_runs, "learning_curves", lambda groups: drawn.setdefault("curves", real_curves(groups))
    )
    monkeypatch.setattr(
        plot_runs, "interval_bars", lambda s: drawn.setdefault("bars", real_bars(s))
    )
    out = tmp_path / "pictures"
    assert plot_runs.main([str(study), str(tmp_path / "single"), "--out", str(out)]) == 0
    assert (out / "curves.png").stat().st_size > 1000 and (out / "final_map.png").exists()
    assert "single: not finished" in capsys.readouterr().out
    ax = next(a for a in drawn["curves"].axes if a.get_title() == "test mAP, pattern 3")
    assert set(lines_by_gid(ax)) == {
        "RGBNT201-DeMo|run0",
        "RGBNT201-DeMo|run1",
        "RGBNT201-DeMo|mean",
        "single|run0",
        "single|mean",
    }
    (bars_ax,) = drawn["bars"].axes
    heights = {p.get_gid(): p.get_height() for p in bars_ax.patches}
    assert heights == {"RGBNT201-DeMo|p1": 31.0, "RGBNT201-DeMo|p3": 41.0}  # finished runs only


def test_plot_runs_bad_input(tmp_path, capsys):
    assert plot_runs.main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"plot_runs: {tmp_path / 'nope'} is not a folder\n"
    assert plot_runs.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"plot_runs: no metrics.json in or below {tmp_path}: not a run folder\n"
    )


def test_without_matplotlib_one_line_says_how_to_install(tmp_path, monkeypatch, capsys):
    write_run(str(tmp_path / "run"), run_records_of(0))
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    with pytest.raises(run_plots.MissingMatplotlib, match="pip install matplotlib"):
        run_plots.learning_curves({"a": [run_records_of(0)]})
    assert plot_runs.main([str(tmp_path / "run"), "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        "plot_runs: the pictures need matplotlib: pip install matplotlib\n"
    )
