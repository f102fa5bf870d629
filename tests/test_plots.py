"""The printed 12-lead page and the stacked view: layout, paper, scale and the data drawn."""
from __future__ import annotations


import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from ecgkit.data.wfdb_io import LEADS
from ecgkit.plots import LAYOUT, plot_ecg, plot_leads



def _record(fs: float, seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    """Distinct, recognisable leads: lead i is a sine of its own frequency plus i/10 mV plus noise."""
    t = np.arange(int(round(seconds * fs))) / fs
    rng = np.random.default_rng(seed)
    cols = [np.sin(2 * np.pi * (1 + i / 3) * t) * 0.5 + i / 10 for i in range(12)]
    return (np.stack(cols, axis=1) + 0.01 * rng.standard_normal((t.size, 12))).astype(np.float32)


def _lines(fig, prefix: str) -> dict:
    ax = fig.axes[0]
    return {ln.get_gid().split(":", 1)[1]: ln for ln in ax.lines if (ln.get_gid() or "").startswith(prefix)}


def _labels(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts if (t.get_gid() or "").startswith("label:")]


def test_layout_has_twelve_segments_one_rhythm_strip_and_thirteen_labels():
    fig = plot_ecg(_record(500), 500)
    assert len(fig.axes) == 1
    assert set(_lines(fig, "lead:")) == set(LEADS)
    assert list(_lines(fig, "rhythm:")) == ["II"]
    labels = _labels(fig)
    assert len(labels) == 13
    assert sorted(labels) == sorted(list(LEADS) + ["II"])
    assert len([ln for ln in fig.axes[0].lines if ln.get_gid() == "calibration"]) == 4


@pytest.mark.parametrize("fs", [500, 100])
def test_each_column_shows_the_next_quarter_of_the_right_lead(fs):
    x = _record(fs)
    fig = plot_ecg(x, fs)
    lines = _lines(fig, "lead:")
    n = x.shape[0]
    bounds = np.linspace(0, n, 5).round().astype(int)
    baselines = {}
    for r, row in enumerate(LAYOUT):
        for c, name in enumerate(row):
            i = LEADS.index(name)
            a, b = bounds[c], bounds[c + 1]
            xd, yd = (np.asarray(v, dtype=float) for v in lines[name].get_data())
            assert len(yd) == b - a == n // 4
            # the column starts c × 2.5 s after the first, and the samples are 1/fs apart
            assert xd[0] - lines[row[0]].get_xdata()[0] == pytest.approx(c * 2.5)
            np.testing.assert_allclose(np.diff(xd), 1 / fs, rtol=1e-9)
            offset = yd - x[a:b, i]
            np.testing.assert_allclose(offset, offset[0], atol=1e-5)  # the lead's slice plus a constant
            baselines.setdefault(r, []).append(offset[0] + np.median(x[:, i]))
    # all leads of a row share one baseline and rows are stacked top to bottom
    rows = [np.mean(v) for _, v in sorted(baselines.items())]
    for v in baselines.values():
        np.testing.assert_allclose(v, v[0], atol=1e-5)
    assert rows == sorted(rows, reverse=True)


@pytest.mark.parametrize("fs, seconds", [(500, 10.0), (100, 10.0), (500, 4.0), (250, 7.3)])
def test_rhythm_strip_spans_the_whole_record(fs, seconds):
    x = _record(fs, seconds)
    fig = plot_ecg(x, fs)
    strip = _lines(fig, "rhythm:")["II"]
    xd, yd = (np.asarray(v, dtype=float) for v in strip.get_data())
    assert len(xd) == x.shape[0]
    assert xd[-1] - xd[0] == pytest.approx((x.shape[0] - 1) / fs)
    np.testing.assert_allclose(yd - x[:, 1], (yd - x[:, 1])[0], atol=1e-5)
    # the four columns tile the same span
    segs = _lines(fig, "lead:")
    assert sum(len(segs[name].get_xdata()) for name in LAYOUT[0]) == x.shape[0]


def test_longer_records_print_ten_seconds_unless_asked_for_all():
    x = _record(500, 15.0)
    assert len(_lines(plot_ecg(x, 500), "rhythm:")["II"].get_xdata()) == 5000
    assert len(_lines(plot_ecg(x, 500, seconds=None), "rhythm:")["II"].get_xdata()) == 7500


def _grid_steps(fig, which: str) -> tuple[float, float]:
    coll = [c for c in fig.axes[0].collections if c.get_gid() == f"grid-{which}"]
    assert len(coll) == 1
    segs = np.asarray(coll[0].get_segments())
    vertical = segs[:, 0, 0] == segs[:, 1, 0]
    xs = np.unique(segs[vertical, 0, 0])
    ys = np.unique(segs[~vertical, 0, 1])
    dx, dy = np.diff(xs), np.diff(ys)
    np.testing.assert_allclose(dx, dx[0], rtol=1e-6)
    np.testing.assert_allclose(dy, dy[0], rtol=1e-6)
    # the grid covers the whole paper
    ax = fig.axes[0]
    assert xs[0] == pytest.approx(ax.get_xlim()[0]) and xs[-1] == pytest.approx(ax.get_xlim()[1])
    assert ys[0] == pytest.approx(ax.get_ylim()[0]) and ys[-1] == pytest.approx(ax.get_ylim()[1])
    return dx[0], dy[0]


def test_grid_is_one_and_five_millimetres():
    fig = plot_ecg(_record(500), 500)
    assert _grid_steps(fig, "minor") == pytest.approx((0.04, 0.1))
    assert _grid_steps(fig, "major") == pytest.approx((0.2, 0.5))


def test_grid_follows_speed_and_gain():
    fig = plot_ecg(_record(500), 500, speed=50, gain=20)
    assert _grid_steps(fig, "minor") == pytest.approx((0.02, 0.05))
    assert fig.axes[0].get_aspect() == pytest.approx(20 / 50)


def test_a_millimetre_square_is_square_and_figure_is_true_size():
    fig = plot_ecg(_record(500), 500)
    ax = fig.axes[0]
    assert ax.get_aspect() == pytest.approx(0.4)  # 10 mm/mV over 25 mm/s
    fig.canvas.draw()
    p0, px, py = ax.transData.transform([(1.0, -1.0), (1.04, -1.0), (1.0, -0.9)])
    assert px[0] - p0[0] == pytest.approx(py[1] - p0[1], rel=1e-3)
    # 1 mm on screen: figure pixels per mm at its dpi
    assert px[0] - p0[0] == pytest.approx(fig.dpi / 25.4, rel=0.01)
    # the calibration pulse is 1 mV = 10 mm tall
    cal = next(ln for ln in ax.lines if ln.get_gid() == "calibration")
    assert np.ptp(cal.get_ydata()) == pytest.approx(1.0)


def test_footer_and_title():
    fig = plot_ecg(_record(100), 100, title="record 1")
    assert fig.axes[0].get_xlabel() == "25 mm/s, 10 mm/mV, 100 Hz"
    assert fig.axes[0].get_title(loc="left") == "record 1"


def test_missing_lead_leaves_its_slot_empty_and_wrong_shapes_are_refused():
    x = _record(500)[:, :11]
    fig = plot_ecg(x, 500, leads=LEADS[:11])
    assert "V6" not in _lines(fig, "lead:") and "V6" in _labels(fig)
    with pytest.raises(ValueError, match="transpose"):
        plot_ecg(_record(500).T, 500)
    with pytest.raises(ValueError):
        plot_ecg(_record(500)[:2], 500)


def test_png_is_written(tmp_path):
    fig = plot_ecg(_record(500), 500, title="synthetic")
    out = tmp_path / "ecg.png"
    fig.savefig(out, dpi=100)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    from matplotlib.image import imread

    img = imread(out)
    w_in, h_in = fig.get_size_inches()
    assert abs(img.shape[0] - h_in * 100) <= 1 and abs(img.shape[1] - w_in * 100) <= 1
    rgb = img[..., :3]
    pink = (rgb[..., 0] > 0.85) & (rgb[..., 1] < 0.85) & (rgb[..., 2] < 0.85)  # grid lines
    dark = rgb.max(axis=-1) < 0.3                                             # traces and labels
    assert pink.mean() > 0.05 and 0.002 < dark.mean() < 0.2


def test_draws_into_a_given_axes():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 8))
    ax = fig.add_subplot()
    assert plot_ecg(_record(500), 500, ax=ax) is fig
    assert len(_lines(fig, "lead:")) == 12


def test_real_record(tmp_path, shared_ptbxl):
    from ecgkit.data.wfdb_io import read_wfdb

    x, fs, _ = read_wfdb(shared_ptbxl / "records500" / "00000" / "00001_hr")
    fig = plot_ecg(x, fs, title="PTB-XL 00001")
    assert len(_lines(fig, "rhythm:")["II"].get_xdata()) == x.shape[0] == 5000
    fig.savefig(tmp_path / "real.png", dpi=80)
    assert (tmp_path / "real.png").stat().st_size > 20_000


def test_plot_leads_draws_the_chosen_leads_and_fiducials():
    fs = 500
    x = _record(fs)
    fid = {"R peaks": [100, 600, 1100, 4000], "QRS onsets": [np.nan, 580, 1080]}
    fig = plot_leads(x, fs, leads=("II", "V1"), seconds=(0, 3), fiducials=fid, title="t")
    assert len(fig.axes) == 2
    for ax, lead in zip(fig.axes, ("II", "V1")):
        trace = next(ln for ln in ax.lines if ln.get_gid() == f"lead:{lead}")
        np.testing.assert_allclose(trace.get_ydata(), x[:1500, LEADS.index(lead)])
        r = next(ln for ln in ax.lines if ln.get_gid() == "fiducial:R peaks")
        np.testing.assert_allclose(r.get_xdata(), np.array([100, 600, 1100]) / fs)  # 4000 is outside
        np.testing.assert_allclose(r.get_ydata(), x[[100, 600, 1100], LEADS.index(lead)])
        q = next(ln for ln in ax.lines if ln.get_gid() == "fiducial:QRS onsets")
        assert len(q.get_xdata()) == 2  # the NaN is skipped
    assert fig.legends and [t.get_text() for t in fig.legends[0].get_texts()] == ["R peaks", "QRS onsets"]


def test_plot_leads_one_dimensional_and_windows():
    y = _record(100)[:, 1]
    fig = plot_leads(y, 100, leads=("II",), seconds=2)
    (trace,) = fig.axes[0].lines
    assert len(trace.get_xdata()) == 200
    with pytest.raises(ValueError, match="not among"):
        plot_leads(_record(100), 100, leads=("V7",))
    with pytest.raises(ValueError, match="no samples"):
        plot_leads(_record(100), 100, seconds=(20, 30))


def test_cohort_violins_label_axes_with_units_and_bars_carry_intervals():
    import pandas as pd

    from ecgkit.plots import bars_with_intervals, cohort_violins, stat_label

    rng = np.random.default_rng(0)
    long = pd.DataFrame({"cohort": ["real"] * 20 + ["synthetic"] * 20, "hr_bpm": rng.normal(70, 10, 40),
                         "qrs_ms": rng.normal(95, 10, 40), "pr_ms": rng.normal(160, 20, 40)})
    fig = cohort_violins(long, ["hr_bpm", "qrs_ms", "pr_ms"])
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_visible()]
    assert labels == ["heart rate (beats/min)", "QRS duration (ms)", "PR interval (ms)"]
    assert stat_label("amp_V1") == "V1 amplitude (mV)"
    table = pd.DataFrame({"estimate": [0.7, 0.6], "low": [0.6, np.nan], "high": [0.8, np.nan]}, index=["a", "b"])
    fig = bars_with_intervals(table, ylabel="macro AUROC")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "macro AUROC" and len(ax.patches) == 2
    assert any(len(c.get_segments()) == 2 for c in ax.collections)      # one error bar per bar


def test_bars_start_at_zero_so_their_length_is_the_value():
    import pandas as pd

    from ecgkit.plots import bars_with_intervals

    table = pd.DataFrame({"estimate": [0.71, 0.19], "low": [0.66, 0.02], "high": [0.76, 0.34]}, index=["a", "b"])
    ax = bars_with_intervals(table, ylabel="macro AUROC", reference=0.5, reference_label="chance").axes[0]
    assert ax.get_xlim() == (0.0, 1.0)
    assert [t.get_text() for t in ax.texts] == ["chance"]
    negative = pd.DataFrame({"estimate": [-0.2, 0.3], "low": [-0.3, 0.2], "high": [-0.1, 0.4]}, index=["a", "b"])
    assert bars_with_intervals(negative).axes[0].get_xlim()[0] < -0.3


def test_stacked_count_bars_label_rows_in_words_and_keep_the_legend_off_the_bars():
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from ecgkit.plots import readable_label, stacked_count_bars

    assert readable_label(("open", "open_waveform")) == "open: waveform"
    assert readable_label(("mcq", "")) == "mcq" and readable_label("train") == "train"
    assert readable_label(("yes_no", "criteria_check")) == "yes no: criteria check"
    table = pd.DataFrame({"train": [40, 12, 30], "eval": [10, 3, 8]},
                         index=pd.MultiIndex.from_tuples([("open", "open_waveform"), ("mcq", "mcq_lead"),
                                                          ("open", "open_feature")], names=["type", "template"]))
    fig = stacked_count_bars(table, xlabel="items", legend_title="split")
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks == ["open: waveform", "mcq: lead", "open: feature"]
    assert not any("(" in t or "_" in t for t in ticks)
    assert ax.get_xlabel() == "items" and ax.get_xlim()[0] == 0
    totals = sorted(round(p.get_x() + p.get_width()) for p in ax.patches if p.get_x() > 0)
    assert totals == [15, 38, 50]                                      # stacked: eval starts where train ends
    legend = fig.legends[0].get_window_extent()
    axes_box = ax.get_window_extent()
    assert legend.y1 <= axes_box.y0 + 1                                # below the axes, on no bar
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["train", "eval"]
