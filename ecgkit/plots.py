"""ECG figures a clinician recognises: the printed 12-lead page and a stacked view with fiducials.

:func:`plot_ecg` draws the standard printout: 3 rows × 4 columns of 2.5 s segments
(I, aVR, V1, V4 / II, aVL, V2, V5 / III, aVF, V3, V6), each column showing the *next* 2.5 s of
the record, with a full-length lead II rhythm strip underneath, on pink grid paper (1 mm minor,
5 mm major squares), a 1 mV calibration pulse at the start of each row and the
"25 mm/s, 10 mm/mV" footer. Data units are seconds and millivolts, and the axes' aspect is
``gain / speed`` so that a 1 mm square is square on screen and on paper; the figure it creates
is drawn at true size (print at 100 % and the squares measure 1 mm).

:func:`plot_leads` is a plainer stacked view of a few leads, for showing delineation results
(``fiducials``: name -> sample indices) as coloured ticks.

Every trace carries a ``gid`` (``"lead:V4"``, ``"rhythm:II"``, ``"calibration"``) and every lead
label a ``gid`` ``"label:V4"`` so that tests and notebooks can find them.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from .data.wfdb_io import LEADS

#: The printed layout: rows of the page, each row the leads of its four 2.5 s columns.
LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))

PAPER = "#fffafa"        # paper background
MINOR = "#f7c6c6"        # 1 mm lines
MAJOR = "#e58f8f"        # 5 mm lines
TRACE = "black"

_MM_PER_INCH = 25.4
_ROW_MM = 38.0           # distance between row baselines on the page
_CAL_MM = 10.0           # space left of the traces for the calibration pulse
# Lead labels sit on a patch of paper that hides the grid but not the trace (drawn above it).
_LABEL = dict(fontsize=8, fontweight="bold", ha="left", va="center", zorder=2.5,
              bbox=dict(boxstyle="square,pad=0.15", facecolor=PAPER, edgecolor="none"))
_FIDUCIAL_COLOURS = ("tab:blue", "tab:red", "tab:green", "tab:orange", "tab:purple",
                     "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")


def _as_2d(signal, leads: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    x = np.asarray(signal, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"signal must be samples × leads, got shape {x.shape}")
    leads = list(leads)
    if x.shape[1] != len(leads):
        if x.shape[0] == len(leads):
            raise ValueError(f"signal has shape {x.shape}: pass it as samples × leads (transpose it)")
        raise ValueError(f"signal has {x.shape[1]} leads but {len(leads)} lead names were given")
    return x, leads


def _centre(trace: np.ndarray) -> float:
    """The offset that puts a lead's median on its baseline (0 for an all-NaN lead)."""
    finite = trace[np.isfinite(trace)]
    return float(np.median(finite)) if finite.size else 0.0


def _grid(ax, x0: float, x1: float, y0: float, y1: float, speed: float, gain: float) -> None:
    """Draw ECG paper on ``ax``: minor lines every 1 mm and major lines every 5 mm."""
    dx, dy = 1.0 / speed, 1.0 / gain              # 1 mm in seconds and in mV
    nx = int(round((x1 - x0) / dx))
    ny = int(round((y1 - y0) / dy))
    for which, step, colour, width, z in (("minor", 1, MINOR, 0.35, 0.1), ("major", 5, MAJOR, 0.75, 0.2)):
        xs = x0 + dx * np.arange(0, nx + 1, step)
        ys = y0 + dy * np.arange(0, ny + 1, step)
        segments = [((x, y0), (x, y1)) for x in xs] + [((x0, y), (x1, y)) for y in ys]
        lines = LineCollection(segments, colors=colour, linewidths=width, zorder=z)
        lines.set_gid(f"grid-{which}")
        ax.add_collection(lines)


def _calibration(ax, x: float, baseline: float, speed: float) -> None:
    """A 1 mV, 5 mm wide calibration pulse starting 2 mm right of ``x``."""
    mm = 1.0 / speed
    xs = x + mm * np.array([0, 2, 2, 7, 7, 9])
    ys = baseline + np.array([0, 0, 1, 1, 0, 0])
    ax.plot(xs, ys, color=TRACE, lw=0.9, solid_joinstyle="miter", zorder=3, gid="calibration")


def plot_ecg(
    signal,
    fs: float,
    title: str | None = None,
    leads: Sequence[str] = LEADS,
    rhythm_lead: str = "II",
    speed: float = 25.0,
    gain: float = 10.0,
    ax=None,
    seconds: float | None = 10.0,
    linewidth: float = 0.6,
) -> Figure:
    """The standard printed 12-lead ECG of ``signal`` (samples × leads, mV) sampled at ``fs`` Hz.

    Three rows of four columns; column *k* shows the *k*-th quarter of the record (2.5 s of a
    10 s record) for the leads of :data:`LAYOUT`, then a full-length ``rhythm_lead`` strip.
    ``speed`` (mm/s) and ``gain`` (mm/mV) set the paper scale: the grid's minor lines are 1 mm
    apart, i.e. ``1/speed`` s and ``1/gain`` mV in data units. ``seconds`` is how much of the
    record to print (from its start; 10 s as on a real page, ``None`` for all of it); a shorter
    record is printed as it is. Each lead is shifted by its median so that it sits on its row's
    baseline. Leads missing from ``leads`` leave their slot empty. Draws into ``ax`` when given,
    else into a new figure drawn at true paper size, and returns the figure.
    """
    if fs <= 0:
        raise ValueError(f"sampling rate must be positive, got {fs}")
    x, names = _as_2d(signal, leads)
    n = x.shape[0]
    if seconds is not None:
        n = min(n, int(round(seconds * fs)))
    if n < 4:
        raise ValueError(f"signal has {n} samples: too short to print")
    x = x[:n]
    index = {name.upper(): i for i, name in enumerate(names)}
    duration = n / fs
    bounds = np.linspace(0, n, 5).round().astype(int)  # the four consecutive column segments

    mm_t, mm_v = 1.0 / speed, 1.0 / gain              # 1 mm in seconds, in mV
    t0 = _CAL_MM * mm_t                                # traces start after the calibration space
    row_step = _ROW_MM * mm_v
    rows = len(LAYOUT) + 1
    baselines = [-(r + 0.5) * row_step for r in range(rows)]  # top row first
    # Paper extent: whole millimetres, major lines on the left edge and on the top edge.
    width_mm = int(np.ceil(_CAL_MM + duration * speed))
    width_mm += (-width_mm) % 5
    height_mm = int(round(rows * _ROW_MM))
    height_mm += (-height_mm) % 5
    x_lo, x_hi = 0.0, width_mm * mm_t
    y_hi = 0.0
    y_lo = -height_mm * mm_v

    if ax is None:
        margin_x, margin_top, margin_bottom = 8.0, 14.0 if title else 8.0, 10.0
        fig_w, fig_h = width_mm + 2 * margin_x, height_mm + margin_top + margin_bottom
        fig = Figure(figsize=(fig_w / _MM_PER_INCH, fig_h / _MM_PER_INCH), facecolor="white")
        ax = fig.add_axes((margin_x / fig_w, margin_bottom / fig_h, width_mm / fig_w, height_mm / fig_h))
    else:
        fig = ax.figure
    ax.set_facecolor(PAPER)
    _grid(ax, x_lo, x_hi, y_lo, y_hi, speed, gain)

    offsets = {name: _centre(x[:, i]) for name, i in ((nm, index[nm.upper()]) for nm in LEADS if nm.upper() in index)}
    label_dy = 0.42 * row_step
    for r, row in enumerate(LAYOUT):
        base = baselines[r]
        _calibration(ax, 0.0, base, speed)
        for c, name in enumerate(row):
            a, b = bounds[c], bounds[c + 1]
            xs = t0 + np.arange(a, b) / fs
            ax.text(t0 + a / fs + 1.2 * mm_t, base + label_dy, name, gid=f"label:{name}", **_LABEL)
            if c > 0:  # the short bar a printer draws where one lead's segment ends and the next begins
                ax.plot([t0 + a / fs] * 2, [base - 3 * mm_v, base + 3 * mm_v], color=TRACE,
                        lw=0.9, zorder=3, gid="separator")
            i = index.get(name.upper())
            if i is None or b <= a:
                continue
            ax.plot(xs, x[a:b, i] - offsets[name] + base, color=TRACE, lw=linewidth, zorder=3,
                    gid=f"lead:{name}")
    base = baselines[-1]
    _calibration(ax, 0.0, base, speed)
    ax.text(t0 + 1.2 * mm_t, base + label_dy, rhythm_lead, gid=f"label:{rhythm_lead}", **_LABEL)
    i = index.get(rhythm_lead.upper())
    if i is not None:
        offset = _centre(x[:, i])
        ax.plot(t0 + np.arange(n) / fs, x[:, i] - offset + base, color=TRACE, lw=linewidth, zorder=3,
                gid=f"rhythm:{rhythm_lead}")

    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_aspect(gain / speed)  # 1 s = speed mm wide, 1 mV = gain mm tall: a 1 mm square is square
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(MAJOR)
    ax.set_xlabel(f"{speed:g} mm/s, {gain:g} mm/mV, {fs:g} Hz", loc="left", fontsize=8, labelpad=3)
    ax.xaxis.label.set_gid("footer")
    if title:
        ax.set_title(title, loc="left", fontsize=10)
    return fig


def _window(n: int, fs: float, seconds) -> tuple[int, int]:
    if seconds is None:
        return 0, n
    if np.isscalar(seconds):
        return 0, min(n, int(round(float(seconds) * fs)))
    start, stop = seconds
    a = max(0, int(round(float(start) * fs)))
    b = min(n, int(round(float(stop) * fs)))
    if b <= a:
        raise ValueError(f"window {seconds} s holds no samples of a {n / fs:g} s signal")
    return a, b


def plot_leads(
    signal,
    fs: float,
    leads: Sequence[str] = ("I", "II", "V1", "V5"),
    seconds: float | tuple[float, float] | None = None,
    fiducials: Mapping[str, Sequence[float]] | None = None,
    names: Sequence[str] = LEADS,
    title: str | None = None,
    grid: bool = True,
    height: float = 1.6,
    width: float = 10.0,
) -> Figure:
    """A stacked view of ``leads`` of ``signal`` (samples × ``names``, or one lead as a 1-D array).

    ``seconds`` is the first that many seconds, a ``(start, stop)`` window in seconds, or
    ``None`` for all. ``fiducials`` maps a name (``"R peaks"``, ``"QRS onsets"``, ...) to sample
    indices of the whole signal (NaN entries, as neurokit returns them, are skipped); each name
    is drawn as coloured ticks on every lead shown, at the trace's value, with a legend.
    One axes per lead (shared time axis in seconds, mV on y) with a light 0.2 s / 0.5 mV grid.
    """
    x = np.asarray(signal, dtype=float)
    if x.ndim == 1:
        leads = list(leads)[:1] or ["signal"]
        x, names = x[:, None], leads
    x, names = _as_2d(x, names)
    index = {name.upper(): i for i, name in enumerate(names)}
    missing = [lead for lead in leads if lead.upper() not in index]
    if missing:
        raise ValueError(f"leads {missing} are not among {list(names)}")
    a, b = _window(x.shape[0], fs, seconds)
    t = np.arange(a, b) / fs
    # fixed margins (in inches) instead of a layout engine: a constrained layout costs ~0.5 s per figure
    fig_h = height * len(leads) + (0.4 if title else 0.1) + 0.55
    top = 0.45 if (title or fiducials) else 0.1
    fig = Figure(figsize=(width, fig_h))
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, bottom=0.45 / fig_h,
                        top=1 - top / fig_h, hspace=0.08)
    axes = fig.subplots(len(leads), 1, sharex=True, squeeze=False)[:, 0]
    marks = {}
    for k, (label, idx) in enumerate((fiducials or {}).items()):
        idx = np.asarray(idx, dtype=float).ravel()
        idx = idx[np.isfinite(idx)].astype(int)
        marks[label] = (idx[(idx >= a) & (idx < b)], _FIDUCIAL_COLOURS[k % len(_FIDUCIAL_COLOURS)])
    for ax, lead in zip(axes, leads):
        y = x[a:b, index[lead.upper()]]
        ax.plot(t, y, color=TRACE, lw=0.8, gid=f"lead:{lead}")
        for label, (idx, colour) in marks.items():
            ax.plot(idx / fs, x[idx, index[lead.upper()]], linestyle="none", marker="|", markersize=14,
                    markeredgewidth=2, color=colour, label=label, gid=f"fiducial:{label}")
        ax.set_ylabel(f"{lead} (mV)")
        if grid:
            ax.set_xticks(np.arange(np.floor(t[0] / 0.2) * 0.2, t[-1] + 0.2, 0.2), minor=True)
            ax.grid(which="both", color=MINOR, lw=0.6)
            ax.set_axisbelow(True)
    axes[-1].set_xlabel("time (s)")
    axes[-1].set_xlim(t[0], t[-1])
    if title:
        fig.suptitle(title, x=0.01, ha="left")
    if marks:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper right", bbox_to_anchor=(1 - 0.1 / width, 1.0),
                   ncol=min(len(marks), 6), fontsize=8, frameon=False)
    return fig


#: Axis labels with units for the per-record statistics of :func:`ecgkit.describe.ecg_summary`.
STAT_LABELS = {"hr_bpm": "heart rate (beats/min)", "rr_sd_ms": "RR standard deviation (ms)",
               "qrs_ms": "QRS duration (ms)", "pr_ms": "PR interval (ms)", "qt_ms": "QT interval (ms)",
               "qtc_ms": "QTc, Bazett (ms)"}


def stat_label(column: str) -> str:
    """A readable axis label with its unit (``amp_V1`` → "V1 amplitude (mV)")."""
    if column.startswith("amp_"):
        return f"{column[4:]} amplitude (mV)"
    return STAT_LABELS.get(column, column.replace("_", " "))


def cohort_violins(long, columns: Sequence[str], cohort: str = "cohort", ncols: int = 2) -> Figure:
    """One violin panel per statistic, cohorts side by side, axes labelled with units; ``long`` has
    a ``cohort`` column and one column per statistic."""
    import seaborn as sns

    nrows = int(np.ceil(len(columns) / ncols))
    fig = Figure(figsize=(5.2 * ncols, 3.4 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, col in zip(axes, columns):
        sns.violinplot(data=long, x=cohort, y=col, hue=cohort, ax=ax, cut=0, legend=False)
        ax.set_ylabel(stat_label(col), fontsize=11)
        ax.set_xlabel("")
        ax.tick_params(labelsize=10)
        ax.grid(axis="y", color="#ddd", lw=0.6)
    for ax in axes[len(columns):]:
        ax.set_visible(False)
    return fig


def bars_with_intervals(table, estimate: str = "estimate", low: str = "low", high: str = "high",
                        ylabel: str = "", title: str = "", reference: float | None = None,
                        reference_label: str = "") -> Figure:
    """Horizontal bars of ``table[estimate]`` (one per row) with their intervals as error bars;
    a row without an interval gets none (and no invented one). The value axis starts at 0 (a bar's
    length is its value) and ends at 1 for values in [0, 1] (an AUROC, a share)."""
    labels = [str(i) for i in table.index]
    est = table[estimate].to_numpy(dtype=float)
    lo, hi = table[low].to_numpy(dtype=float), table[high].to_numpy(dtype=float)
    err = np.vstack([np.where(np.isfinite(lo), est - lo, 0), np.where(np.isfinite(hi), hi - est, 0)])
    fig = Figure(figsize=(8, 0.45 * len(labels) + 1.2), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(labels))[::-1]
    ax.barh(y, est, xerr=np.clip(err, 0, None), color="#4c72b0", ecolor="black", capsize=3, gid="bars")
    ax.set_yticks(y, labels)
    finite = np.concatenate([est, lo, hi])
    finite = finite[np.isfinite(finite)]
    if finite.size:   # a bar's length is its value: the axis starts at 0 (below it only for a negative value)
        top = finite.max()
        ax.set_xlim(0.0 if finite.min() >= 0 else finite.min() - 0.05, 1.0 if 0 <= top <= 1 else top * 1.05)
    if reference is not None:
        ax.axvline(reference, color="k", lw=0.6, ls="--", gid="reference")
        if reference_label:      # named above the axes, clear of the bars
            ax.annotate(reference_label, (reference, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 2),
                        textcoords="offset points", ha="center", va="bottom", fontsize=8)
    ax.set_xlabel(ylabel)
    if title:
        ax.set_title(title, loc="left", fontsize=10)
    return fig


def readable_label(label) -> str:
    """A row or column label in words: a (level, level) tuple joined with ": ", underscores as
    spaces, a level's repeat of the one before dropped (``("open", "open_waveform")`` → "open: waveform")."""
    parts = label if isinstance(label, tuple) else (label,)
    words = [str(p).replace("_", " ").strip() for p in parts]
    kept = []
    for w in words:
        if kept and w.startswith(kept[-1] + " "):      # ("open", "open_waveform") → "open: waveform"
            w = w[len(kept[-1]) + 1:]
        if w and (not kept or w != kept[-1]):
            kept.append(w)
    return ": ".join(kept)


def stacked_count_bars(table, xlabel: str, ylabel: str = "", legend_title: str = "", title: str = "") -> Figure:
    """Horizontal stacked bars of counts, one bar per row of ``table`` (a row per category, a
    column per part, e.g. items per template and split), labels in words (:func:`readable_label`),
    the count axis from 0, and the legend below the axes, clear of the bars."""
    labels = [readable_label(i) for i in table.index]
    values = table.to_numpy(dtype=float)
    fig = Figure(figsize=(8, 0.32 * len(labels) + 1.8), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(labels))[::-1]
    left = np.zeros(len(labels))
    for j, column in enumerate(table.columns):
        ax.barh(y, values[:, j], left=left, label=readable_label(column), gid=f"bars:{column}")
        left += np.nan_to_num(values[:, j])
    ax.set_yticks(y, labels)
    ax.set_xlim(0, max(1.0, left.max() * 1.05))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, loc="left", fontsize=10)
    fig.legend(loc="outside lower center", ncol=min(len(table.columns), 5), title=legend_title or None,
               frameon=False)
    return fig


#: Colours of the waves in delineation figures (P, QRS, T).
WAVE_COLOURS = {1: "#4c9be8", 2: "#e8604c", 3: "#5cb85c"}
WAVE_NAMES = {1: "P", 2: "QRS", 3: "T"}
FIDUCIAL_NAMES = {"p_on": "P onset", "p_off": "P offset", "qrs_on": "QRS onset",
                  "qrs_off": "QRS offset", "t_on": "T onset", "t_off": "T offset"}


def delineation_errors(errors, methods: Sequence[str] | None = None, limit_ms: float = 80.0) -> Figure:
    """Box plots of the signed boundary errors (ours − cardiologist, ms) per fiducial, one box per
    method side by side, one panel per database. ``errors``: rows ``method, database, fiducial,
    error_ms`` (:func:`ecgkit.alfred.delineation.crossval.error_table` per method); the axis spans
    ±``limit_ms`` (whiskers at the 5th and 95th percentiles, outliers not drawn)."""
    methods = list(methods or dict.fromkeys(errors["method"]))
    databases = list(dict.fromkeys(errors["database"]))
    fig = Figure(figsize=(10.0, 3.2 * len(databases)), layout="constrained")
    axes = fig.subplots(len(databases), 1, squeeze=False)[:, 0]
    colours = ["#1f77b4", "#ff7f0e", "#7f7f7f", "#2ca02c"]
    for ax, db in zip(axes, databases):
        part = errors[errors["database"] == db]
        fids = [f for f in FIDUCIAL_NAMES if f in set(part["fiducial"])]
        width = 0.8 / len(methods)
        for m, method in enumerate(methods):
            data = [part.loc[(part["method"] == method) & (part["fiducial"] == f), "error_ms"].to_numpy()
                    for f in fids]
            pos = np.arange(len(fids)) + (m - (len(methods) - 1) / 2) * width
            keep = [i for i, d in enumerate(data) if d.size]
            if not keep:
                continue
            box = ax.boxplot([data[i] for i in keep], positions=pos[keep], widths=width * 0.9,
                             whis=(5, 95), showfliers=False, patch_artist=True)
            for patch in box["boxes"]:
                patch.set_facecolor(colours[m % len(colours)])
                patch.set_alpha(0.6)
            ax.plot([], [], color=colours[m % len(colours)], lw=6, alpha=0.6, label=method)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(np.arange(len(fids)), [FIDUCIAL_NAMES[f] for f in fids])
        ax.set_ylim(-limit_ms, limit_ms)
        ax.set_ylabel("error, ours − cardiologist (ms)")
        ax.set_title(f"{db.upper()}: boundary errors (box: quartiles; whiskers: 5th–95th percentile)",
                     fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return fig


def delineation_strips(examples, fs: float, seconds: float = 4.0) -> Figure:
    """Real leads with their delineations drawn under the trace as coloured bands (P blue, QRS
    red, T green): one panel per example, a band row per annotator. ``examples``: dicts with
    ``signal`` (one lead, mV), ``title`` and ``bands`` (name → per-sample labels 0–3, negative =
    not marked)."""
    examples = list(examples)
    fig = Figure(figsize=(10.0, 2.4 * len(examples)), layout="constrained")
    axes = fig.subplots(len(examples), 1, squeeze=False)[:, 0]
    for ax, ex in zip(axes, examples):
        x = np.asarray(ex["signal"], dtype=float)[: int(seconds * fs)]
        t = np.arange(x.size) / fs
        ax.plot(t, x, color="black", lw=0.9)
        lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
        span = max(hi - lo, 0.5)
        rows = list(ex["bands"].items())
        for r, (name, lab) in enumerate(rows):
            lab = np.asarray(lab)[: x.size]
            y0 = lo - (r + 1) * 0.22 * span
            for v, colour in WAVE_COLOURS.items():
                on = np.flatnonzero(np.diff(np.concatenate([[0], (lab == v).astype(int), [0]])) == 1)
                off = np.flatnonzero(np.diff(np.concatenate([[0], (lab == v).astype(int), [0]])) == -1)
                for a, b in zip(on, off):
                    ax.fill_between([a / fs, b / fs], y0, y0 + 0.16 * span, color=colour, lw=0)
            ax.text(-0.01, y0 + 0.08 * span, name, ha="right", va="center", fontsize=8,
                    transform=ax.get_yaxis_transform())
        ax.set_ylim(lo - (len(rows) + 0.3) * 0.22 * span, hi + 0.1 * span)
        ticks = [t for t in ax.get_yticks() if lo - 0.05 * span <= t <= hi + 0.05 * span]
        ax.set_yticks(ticks)                      # no mV ticks beside the annotators' rows
        ax.set_xlim(0, x.size / fs)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("mV")
        ax.set_title(ex["title"], fontsize=10, loc="left")
    handles = [ax.fill_between([], [], color=c, label=WAVE_NAMES[v]) for v, c in WAVE_COLOURS.items()]
    axes[0].legend(handles=handles, loc="upper right", fontsize=8, ncol=3, frameon=False)
    return fig
