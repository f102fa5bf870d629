"""Ground truth as per-sample labels and labels back to fiducials (the delineator's targets and outputs)."""
from __future__ import annotations


import numpy as np
import pandas as pd

from ...data.delineation import label_runs as _runs
from ...vocabulary import LEADS


#: Classes of the labels: 0 none, 1 P wave, 2 QRS complex, 3 T wave.
CLASSES = ("none", "P", "QRS", "T")
#: The rate the network sees.
FS = 500
#: Columns of the fiducials frames returned here (samples at the input rate, −1 = absent).
OUTPUT_COLUMNS = ("p_on", "p_peak", "p_off", "qrs_on", "r_peak", "qrs_off", "t_on", "t_peak",
                  "t_off")
#: Minimum durations (ms) below which a predicted segment is discarded as spurious.
MIN_MS = {1: 30.0, 2: 30.0, 3: 50.0}
#: Gaps (ms) of "none" shorter than this inside one wave are closed.
GAP_MS = 12.0


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------

def _fill(row: np.ndarray, on: int, off: int, value: int) -> None:
    """Label ``[on, off)`` (an offset is the first sample after the wave); −1 = the record's edge."""
    n = row.shape[0]
    if on < 0 and off < 0:
        return
    on = 0 if on < 0 else on
    off = n if off < 0 else off
    if off <= on or on >= n:
        return
    row[on:min(off, n)] = value


def fiducials_to_mask(fiducials: pd.DataFrame, n_samples: int, leads=LEADS) -> np.ndarray:
    """Per-lead fiducials (columns ``lead, p_on, p_off, qrs_on, qrs_off, t_peak, t_off``) →
    an int8 mask (len(leads) × n_samples) of :data:`CLASSES` indices.

    P = ``[p_on, p_off)``, QRS = ``[qrs_on, qrs_off)``, T = ``[max(qrs_off, t_peak − (t_off −
    t_peak)), t_off)`` (or ``[t_on, t_off)`` when a ``t_on`` column is given): an offset is the
    first sample after its wave, as in the cardiologists' annotations (LUDB, QT Database). −1 marks an absent
    point; a wave with only one of its bounds present is cut at the record's edge. Rows whose
    lead is not in ``leads`` (such as the generator's ``"all"``) are ignored.
    """
    leads = list(leads)
    mask = np.zeros((len(leads), int(n_samples)), dtype=np.int8)
    index = {name: i for i, name in enumerate(leads)}
    upper = {str(name).upper(): i for i, name in enumerate(leads)}
    has_ton = "t_on" in fiducials.columns
    for row in fiducials.itertuples(index=False):
        lead = str(row.lead)
        i = index.get(lead, upper.get(lead.upper()))
        if i is None:
            continue
        m = mask[i]
        t_off, t_peak = int(row.t_off), int(row.t_peak)
        if has_ton and int(row.t_on) >= 0:
            t_on = int(row.t_on)
        elif t_peak >= 0 and t_off >= 0:
            t_on = max(2 * t_peak - t_off, int(row.qrs_off) if int(row.qrs_off) >= 0 else -1)
        else:
            t_on = t_peak if t_peak >= 0 else -1
            if t_on < 0 and t_off >= 0:
                t_on = -1  # T cut by the record's start: from sample 0
        _fill(m, t_on, t_off, 3)
        _fill(m, int(row.p_on), int(row.p_off), 1)
        _fill(m, int(row.qrs_on), int(row.qrs_off), 2)
    return mask


def _clean(labels: np.ndarray, fs: float) -> np.ndarray:
    """Close short gaps inside a wave, then drop segments shorter than :data:`MIN_MS`."""
    labels = labels.astype(np.int8).copy()
    gap = int(round(GAP_MS * fs / 1000))
    vals, starts, stops = _runs(labels)
    for k in range(1, len(vals) - 1):
        if vals[k] == 0 and vals[k - 1] == vals[k + 1] != 0 and stops[k] - starts[k] <= gap:
            labels[starts[k]:stops[k]] = vals[k - 1]
    vals, starts, stops = _runs(labels)
    for v, a, b in zip(vals, starts, stops):
        if v != 0 and (b - a) < MIN_MS[int(v)] * fs / 1000:
            labels[a:b] = 0
    return labels


def _extremum(sig: np.ndarray | None, a: int, b: int) -> int:
    """Sample of the largest deflection in ``[a, b]`` (from the line joining its ends), or the
    middle when there is no signal."""
    if sig is None or b <= a:
        return (a + b) // 2
    seg = np.asarray(sig[a:b + 1], dtype=float)
    base = seg[0] + (seg[-1] - seg[0]) * (np.arange(seg.size) / (seg.size - 1))
    return a + int(np.argmax(np.abs(seg - base)))


def mask_to_fiducials(mask: np.ndarray, fs: float = FS, signal: np.ndarray | None = None,
                      leads=None) -> pd.DataFrame:
    """A label mask (n_samples, or leads × n_samples) → fiducials, one row per beat and lead.

    Spurious segments are removed first (gaps under :data:`GAP_MS` inside a wave closed, then
    segments shorter than :data:`MIN_MS` dropped). Every QRS segment is a beat; its P wave is the
    last P segment between the previous QRS and this one, its T wave the first T segment between
    this QRS and the next. ``r_peak`` is the sample of largest ``|signal|`` inside the QRS
    (largest deflection from the segment's baseline for P and T peaks) when ``signal`` (same
    shape as ``mask``) is given, else the segment's middle. Onsets are a wave's first sample,
    offsets the first sample after it (the last sample of the record for a wave that reaches
    it). Columns: ``lead, beat`` and :data:`OUTPUT_COLUMNS` in samples at ``fs`` (−1 = absent).
    """
    mask = np.asarray(mask)
    single = mask.ndim == 1
    mask = mask[None] if single else mask
    if signal is not None:
        signal = np.asarray(signal)
        signal = signal[None] if signal.ndim == 1 else signal
        if signal.shape != mask.shape:
            raise ValueError(f"signal shape {signal.shape} differs from mask shape {mask.shape}")
    if leads is None:
        leads = list(LEADS) if mask.shape[0] == len(LEADS) else list(range(mask.shape[0]))
    rows = []
    for i, lead in enumerate(leads):
        lab = _clean(mask[i], fs)
        sig = None if signal is None else signal[i]
        vals, starts, stops = _runs(lab)
        last = lab.size - 1
        seg = {c: (starts[vals == c].astype(np.int64),
                   np.minimum(stops[vals == c], last).astype(np.int64)) for c in (1, 2, 3)}
        q_ons, q_offs = seg[2]
        p_on, p_off = seg[1]
        t_on, t_off = seg[3]
        nq = q_ons.size
        if nq == 0:
            continue
        prev_end = np.concatenate([[-1], q_offs[:-1]])
        next_start = np.concatenate([q_ons[1:], [lab.size]])
        # P: the last P segment ending before the QRS, if it starts after the previous QRS
        pi = np.searchsorted(p_off, q_ons, side="right") - 1     # p_off <= q_on
        has_p = (pi >= 0) & (p_on[np.maximum(pi, 0)] >= prev_end) if p_on.size else np.zeros(nq, bool)
        # T: the first T segment starting after the QRS, if it ends before the next QRS
        ti = np.searchsorted(t_on, q_offs, side="left")          # t_on >= q_off
        has_t = (ti < t_on.size) & (t_off[np.minimum(ti, max(t_on.size - 1, 0))] <= next_start) \
            if t_on.size else np.zeros(nq, bool)
        for k in range(nq):
            q_on, q_off = int(q_ons[k]), int(q_offs[k])
            if sig is not None:
                r = q_on + int(np.argmax(np.abs(sig[q_on:max(q_off, q_on + 1)])))
            else:
                r = (q_on + q_off) // 2
            if has_p[k]:
                pa, pb = int(p_on[pi[k]]), int(p_off[pi[k]])
                pp = (pa, _extremum(sig, pa, pb), pb)
            else:
                pp = (-1, -1, -1)
            if has_t[k]:
                ta, tb = int(t_on[ti[k]]), int(t_off[ti[k]])
                tt = (ta, _extremum(sig, ta, tb), tb)
            else:
                tt = (-1, -1, -1)
            rows.append((lead, k, *pp, q_on, r, q_off, *tt))
    out = pd.DataFrame(rows, columns=["lead", "beat", *OUTPUT_COLUMNS])
    for c in ("beat", *OUTPUT_COLUMNS):
        out[c] = out[c].astype(np.int64)
    return out
