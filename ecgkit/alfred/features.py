"""ALFRED step 2: the features of a delineated 12-lead ECG.

From the signal (samples × 12, mV, :data:`ecgkit.data.wfdb_io.LEADS` order), its sampling rate
and a delineation (the fiducial table of :func:`ecgkit.data.synthetic.simulate_ecg`: columns ``lead,
beat, p_on, p_peak, p_off, qrs_on, r_peak, qrs_off, t_peak, t_off`` in samples, -1 = absent, one
row per beat and lead, optionally one ``lead == "all"`` row per beat with the global boundaries)
:func:`extract_features` measures the 30 lead features and 12 global features of
:mod:`ecgkit.knowledge.catalog`, plus age and sex.

How it measures
---------------
* **Isoelectric reference.** For every beat and lead, the mean of the PR segment (P offset to
  QRS onset); without a P wave (or with a PR segment under 10 ms) the TP segment before it (from
  the previous T offset, at most 200 ms, up to 20 ms before the P/QRS onset). The per-beat
  levels are joined by straight lines and the resulting baseline is subtracted from the lead, so
  every amplitude below is relative to the PR segment and slow baseline wander is removed.
* **Median beat.** Beats are aligned on the lead's QRS onset and the sample-wise median is
  taken (beats that run over an edge of the record contribute where they have samples). Wave
  boundaries in the median beat are the medians of the per-beat boundaries relative to QRS onset.
* **QRS waves** are found with a hysteresis "zig-zag" (turning points that reverse by at least
  max(0.02 mV, 5 % of the QRS peak-to-peak)): R = first positive peak above 0.025 mV; Q = the
  lowest trough before R; S = the lowest trough after R (before R'); R' = a later positive peak
  separated from R by a trough below the baseline (a true S). Without any R wave the complex is a
  QS complex: its depth is reported both as ``q_amplitude`` and ``s_amplitude`` (so that
  Sokolow-Lyon uses the QS depth in V1, as by hand), ``r_amplitude`` is 0. Depths are positive.
  ``qrs_notch`` counts the turning points left over after Q, R, S and R' are named.
* **Absent waves** that the catalog defines as 0 (Q/S depth and width, R', U) are 0; anything
  that cannot be measured is NaN and has a reason in the ``missing`` dictionary.
* **T onset** is not part of the delineation: it is taken as the point between J and the T peak
  farthest behind the chord from J to the T peak (where the ST segment bends into the T wave).
* **Global intervals** are medians over beats of the global boundaries ("all" rows, or the
  earliest onset / latest offset over the leads); RR intervals come from the global R peaks
  (or the median lead R peak) of the beats at least ``EDGE_MS`` (100 ms) from both ends of the
  record (:func:`ecgkit.alfred.beats.counted`: a truncated edge beat feeds no RR interval). QTc
  uses the mean RR. Axes are ``atan2(area aVF, area I)`` of the net P, QRS and T areas in the
  median beats; without lead I or aVF, those areas are derived from any two other limb leads
  (Einthoven/Goldberger relations).
* ``p_wave_ratio``: the share of beats (whose P wave could have been recorded) with a P wave
  whose PR interval is plausible (:data:`PR_RANGE_MS`) and within :data:`PR_TOLERANCE_MS` of the
  record's median PR. The global P wave of a beat is the one that at least half of the leads
  showing the beat have (:func:`ecgkit.alfred.delineation.align_beats`). Fibrillatory waves
  taken for P waves in some beats have no fixed PR, so atrial fibrillation keeps a low ratio.
* **Fewer than 12 leads**: a missing lead (all NaN, see :func:`pad_leads`) has no lead features
  ("lead not recorded").
* ``noise_level``: RMS of the residual of the beats around the median beat after a 1 Hz
  high-pass; ``baseline_drift``: peak-to-peak range of the lead low-passed below 0.5 Hz.
* ``delta_wave``: from the visible start (0.02 mV) of the upstroke of the first main deflection
  to where its slope first reaches 40 % of its steepest value (a simple slope criterion: the
  synthetic normal QRS gives 0–25 ms, broad slow R waves in the limb leads the most).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import signal as sps

from ..knowledge.catalog import GLOBAL_FEATURES, LEAD_FEATURES
from ..vocabulary import LEADS, sex_code
from .beats import EDGE_MS, counted

__all__ = ["extract_features", "extract_features_many", "feature_names", "feature_table",
           "pad_leads", "WAVE_THRESHOLD_MV", "PR_RANGE_MS", "PR_TOLERANCE_MS"]

#: A QRS wave must reach this far from the baseline (mV) to be named Q, R, S or R'.
WAVE_THRESHOLD_MV = 0.025
#: A P wave counts for ``p_wave_ratio`` when its PR interval lies in this range (ms) ...
PR_RANGE_MS = (80.0, 400.0)
#: ... and within this many ms of the record's median PR (a constant PR interval, as a sinus- or
#: atrially-conducted P wave has; fibrillatory waves taken for P waves have no fixed PR). Chosen
#: on PTB-XL folds 1–9 (the largest of 20–60 ms that kept every atrial fibrillation found).
PR_TOLERANCE_MS = 30.0
_FID = ("p_on", "p_peak", "p_off", "qrs_on", "r_peak", "qrs_off", "t_peak", "t_off")


def feature_names() -> list[str]:
    """All names :func:`extract_features` returns, in order (lead features lead by lead)."""
    names = [f"{f.key}_{lead}" for lead in LEADS for f in LEAD_FEATURES]
    return names + [f.key for f in GLOBAL_FEATURES] + ["age", "sex"]


def feature_table() -> pd.DataFrame:
    """One row per feature name: ``name, key, lead, unit, scope, description`` (for the book)."""
    rows = []
    for lead in LEADS:
        for f in LEAD_FEATURES:
            rows.append({"name": f"{f.key}_{lead}", "key": f.key, "lead": lead, "unit": f.unit,
                         "scope": "lead", "description": f.description})
    for f in GLOBAL_FEATURES:
        rows.append({"name": f.key, "key": f.key, "lead": "", "unit": f.unit, "scope": "global",
                     "description": f.description})
    rows.append({"name": "age", "key": "age", "lead": "", "unit": "years", "scope": "patient",
                 "description": "age of the patient"})
    rows.append({"name": "sex", "key": "sex", "lead": "", "unit": "code", "scope": "patient",
                 "description": "sex of the patient (0 = male, 1 = female, PTB-XL coding)"})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Fiducials
# --------------------------------------------------------------------------------------------

def _fid_arrays(fiducials: pd.DataFrame, lead: str | None) -> dict | None:
    """Per-beat fiducials (float arrays, NaN = absent) of one lead or of the global rows."""
    col = fiducials["lead"].astype(str)
    if lead is None:
        sub = fiducials[col.str.lower() == "all"]
        if sub.empty:
            return _derive_global(fiducials)
    else:
        sub = fiducials[col.str.upper() == lead.upper()]
        if sub.empty:
            return None
    sub = sub.sort_values("beat")
    out = {"beat": sub["beat"].to_numpy()}
    for c in _FID:
        v = sub[c].to_numpy(dtype=float) if c in sub else np.full(len(sub), -1.0)
        out[c] = np.where(v >= 0, v, np.nan)
    return out


def _derive_global(fiducials: pd.DataFrame) -> dict | None:
    """Global boundaries per beat: earliest onset and latest offset over the leads."""
    sub = fiducials[fiducials["lead"].astype(str).str.lower() != "all"]
    if sub.empty:
        return None
    f = sub[["beat", *[c for c in _FID if c in sub]]].copy()
    for c in _FID:
        if c not in f:
            f[c] = -1
        f[c] = f[c].where(f[c] >= 0)
    agg = {"p_on": "min", "qrs_on": "min", "t_peak": "median", "p_peak": "median",
           "r_peak": "median", "p_off": "max", "qrs_off": "max", "t_off": "max"}
    g = f.groupby("beat").agg(agg).sort_index()
    out = {"beat": g.index.to_numpy()}
    for c in _FID:
        out[c] = np.round(g[c].to_numpy(dtype=float))
    return out


# --------------------------------------------------------------------------------------------
# Signal helpers
# --------------------------------------------------------------------------------------------

def _baseline_curve(x: np.ndarray, fd: dict, fs: float) -> tuple[np.ndarray, int]:
    """Isoelectric baseline of one lead (knots at the PR/TP segments, linear in between)."""
    n = x.size
    knots_t, knots_v = [], []
    qon, pon, poff, toff = fd["qrs_on"], fd["p_on"], fd["p_off"], fd["t_off"]
    for b in range(qon.size):
        if np.isnan(qon[b]):
            continue
        q = int(qon[b])
        seg = None
        if not np.isnan(pon[b]) and not np.isnan(poff[b]) and q - int(poff[b]) >= max(2, int(0.01 * fs)):
            seg = (int(poff[b]), q)
        else:
            end = (int(pon[b]) if not np.isnan(pon[b]) else q) - int(round(0.02 * fs))
            prev_t = toff[b - 1] if b > 0 else np.nan
            start = end - int(round(0.2 * fs))
            if not np.isnan(prev_t):
                start = max(start, int(prev_t) + int(round(0.02 * fs)))
            if end - start >= max(2, int(0.02 * fs)):
                seg = (start, end)
        if seg is None:
            continue
        s0, s1 = max(0, seg[0]), min(n, seg[1])
        if s1 - s0 < 2:
            continue
        knots_t.append(0.5 * (s0 + s1 - 1))
        knots_v.append(float(np.mean(x[s0:s1])))
    if not knots_t:
        return np.zeros(n), 0
    return np.interp(np.arange(n), knots_t, knots_v), len(knots_t)


def _beat_matrix(x: np.ndarray, onsets: np.ndarray, pre: int, post: int) -> np.ndarray:
    """Beats × (pre + post + 1) windows around the onsets, NaN outside the record."""
    n = x.size
    idx = onsets.astype(int)[:, None] + np.arange(-pre, post + 1)[None, :]
    ok = (idx >= 0) & (idx < n)
    return np.where(ok, x[np.clip(idx, 0, n - 1)], np.nan)


def _rel(fd: dict, key: str) -> float:
    """Median of a fiducial relative to QRS onset over the beats where both exist (samples)."""
    v = fd[key] - fd["qrs_on"]
    v = v[~np.isnan(v)]
    return float(np.median(v)) if v.size else np.nan


def _zigzag(x: np.ndarray, h: float) -> list[int]:
    """Turning points of ``x`` that reverse by at least ``h`` (alternating peaks and troughs).

    The first turning point must also differ by ``h`` from the first sample; the last pending
    extremum is kept when it lies inside the segment."""
    n = x.size
    if n < 3:
        return []
    ext: list[int] = []
    trend, hi, lo = 0, 0, 0
    for i in range(1, n):
        v = x[i]
        if trend == 0:
            if v > x[hi]:
                hi = i
            if v < x[lo]:
                lo = i
            if x[hi] - x[lo] >= h:
                if hi > lo:       # went down to lo first, then up: lo is a trough (if inside)
                    if lo > 0:
                        ext.append(lo)
                    trend = 1
                else:
                    if hi > 0:
                        ext.append(hi)
                    trend = -1
        elif trend == 1:
            if v > x[hi]:
                hi = i
            elif x[hi] - v >= h:
                ext.append(hi)
                trend, lo = -1, i
        else:
            if v < x[lo]:
                lo = i
            elif v - x[lo] >= h:
                ext.append(lo)
                trend, hi = 1, i
    last = hi if trend == 1 else lo if trend == -1 else None
    if last is not None and 0 < last < n - 1 and (not ext or ext[-1] != last):
        ext.append(last)
    return ext


def _region(x: np.ndarray, k: int, positive: bool) -> tuple[int, int]:
    """The run of samples around index ``k`` on the same side of zero (inclusive bounds)."""
    inside = x > 0 if positive else x < 0
    a = k
    while a > 0 and inside[a - 1]:
        a -= 1
    b = k
    while b < x.size - 1 and inside[b + 1]:
        b += 1
    return a, b


def _qrs_waves(q: np.ndarray) -> dict:
    """Q, R, S, R' of one baseline-corrected QRS segment (indices relative to the segment).

    Peaks come from the zig-zag (robust to small wiggles); troughs are the lowest interior local
    minima of the segment. A peak or trough at the very edge of the segment (the J point riding
    on an elevated or depressed ST segment) is not a wave."""
    ptp = float(q.max() - q.min())
    h = max(0.02, 0.05 * ptp)
    thr = WAVE_THRESHOLD_MV
    ext = _zigzag(q, h)
    peaks = [i for i in ext if q[i] > thr and q[i] >= q[i - 1] and q[i] >= q[i + 1]]
    minima = np.array([i for i in range(1, q.size - 1) if q[i] <= q[i - 1] and q[i] <= q[i + 1]
                       and q[i] < -thr], dtype=int)

    def lowest(a, b):  # lowest interior minimum in [a, b)
        m = minima[(minima >= a) & (minima < b)] if minima.size else minima
        return int(m[np.argmin(q[m])]) if m.size else None

    out = {"r": None, "q": None, "s": None, "rp": None, "ext": ext, "h": h}
    if peaks:
        r = peaks[0]
        out["r"] = r
        out["q"] = lowest(0, r)
        later = [p for p in peaks[1:] if q[r:p].min() < -thr]  # an S below baseline between
        end = q.size
        if later:
            out["rp"] = later[0]
            end = later[0]
        out["s"] = lowest(r + 1, end)
    else:
        k = lowest(0, q.size)
        if k is not None:
            out["qs"] = k
    return out


def _largest(x: np.ndarray) -> int:
    return int(np.argmax(np.abs(x)))


# --------------------------------------------------------------------------------------------
# Lead features
# --------------------------------------------------------------------------------------------

class _LeadValues:
    """The lead features being measured, with the reason of each one that stays missing."""

    def __init__(self):
        self.keys = [f.key for f in LEAD_FEATURES]
        self.val = {k: np.nan for k in self.keys}
        self.why: dict[str, str] = {}
        self.extra = {"p_area": np.nan}

    def miss(self, names, reason):
        for k in ([names] if isinstance(names, str) else names):
            if np.isnan(self.val[k]) and k not in self.why:
                self.why[k] = reason

    def result(self) -> tuple[dict, dict, dict]:
        return self.val, self.why, self.extra


@dataclass
class _MedianBeat:
    """The baseline-corrected median beat of a lead and where its waves are (samples)."""

    med: np.ndarray
    o: int             # QRS onset
    j: int             # QRS offset (J point)
    pr_rel: float      # P onset relative to QRS onset (negative; NaN without P)
    toff_rel: float    # T offset relative to QRS onset (NaN without T)
    has_p: bool
    x: np.ndarray      # the baseline-corrected signal
    on: np.ndarray     # QRS onsets of the beats used
    pre: int
    post: int
    n_beats: int
    p_off_rel: float = math.nan
    t_peak_rel: float = math.nan


def _median_beat(raw, fs, fd, rr_med, out: _LeadValues) -> _MedianBeat | None:
    """Align the beats on QRS onset, correct the baseline and take the median (None: not possible,
    with the reason recorded)."""
    ok = ~np.isnan(fd["qrs_on"]) & ~np.isnan(fd["qrs_off"])
    fd = {k: v[ok] for k, v in fd.items()}
    nb = int(ok.sum())
    if nb < 1:
        out.miss(out.keys, "no beats with QRS onset and offset")
        return None
    base, nknots = _baseline_curve(raw, fd, fs)
    if nknots == 0:
        out.miss(out.keys, "no isoelectric segment (PR or TP) found")
        return None
    x = raw - base
    on = fd["qrs_on"]
    has_p = bool((~np.isnan(fd["p_on"]) & ~np.isnan(fd["p_off"])).any())
    pr_rel = _rel(fd, "p_on")  # negative
    off_rel = int(round(_rel(fd, "qrs_off")))
    toff_rel = _rel(fd, "t_off")
    pre = int(round(max(-pr_rel if not np.isnan(pr_rel) else 0.0, 0.1 * fs) + 0.05 * fs))
    qt_end = toff_rel if not np.isnan(toff_rel) else off_rel + 0.3 * fs
    post = int(round(qt_end + 0.25 * fs))
    if not np.isnan(rr_med):
        post = int(min(post, max(rr_med - 0.05 * fs, off_rel + 0.1 * fs)))
    post = max(post, off_rel + int(0.1 * fs))
    mat = _beat_matrix(x, on, pre, post)
    with np.errstate(all="ignore"):
        med = np.nanmedian(mat, axis=0)
    if np.isnan(med).any():  # columns no beat covers (very short records)
        good = ~np.isnan(med)
        med = np.interp(np.arange(med.size), np.nonzero(good)[0], med[good])
    o = pre  # index of QRS onset in the median beat
    j = o + off_rel
    if j <= o + 1:
        out.miss(out.keys, "QRS offset not after QRS onset")
        return None
    return _MedianBeat(med, o, j, pr_rel, toff_rel, has_p, x, on, pre, post, nb,
                       _rel(fd, "p_off"), _rel(fd, "t_peak"))


def _noise(raw, fs, beat: _MedianBeat, out: _LeadValues) -> None:
    """Residual around the median beat after a 1 Hz high-pass."""
    if raw.size > 3 * fs and beat.n_beats >= 2:
        sos = sps.butter(2, 1.0, "highpass", fs=fs, output="sos")
        hp = sps.sosfiltfilt(sos, raw)
        hm = _beat_matrix(hp, beat.on, beat.pre, beat.post)
        with np.errstate(all="ignore"):
            res = hm - np.nanmedian(hm, axis=0)[None, :]
            # across-beat RMS at each instant, then the median over the beat: stationary noise
            # counts in full, small beat-to-beat shifts of steep waves (RR-dependent T) do not
            per_t = np.sqrt(np.nanmean(res ** 2, axis=0))
            out.val["noise_level"] = float(np.nanmedian(per_t))
    else:
        out.miss("noise_level", "fewer than 2 beats" if beat.n_beats < 2 else "record shorter than 3 s")


def _p_wave(beat: _MedianBeat, ms: float, out: _LeadValues) -> None:
    val, med, o = out.val, beat.med, beat.o
    names = ["p_amplitude", "p_duration", "p_terminal_negative", "pr_interval_lead"]
    if not (beat.has_p and not np.isnan(beat.pr_rel)):
        out.miss(names, "no P wave detected")
        return
    p0, p1 = o + int(round(beat.pr_rel)), o + int(round(beat.p_off_rel))
    if p1 <= p0:
        out.miss(names, "P offset not after P onset")
        return
    pw = med[p0:p1 + 1]
    val["p_amplitude"] = float(pw[_largest(pw)])
    val["p_duration"] = (p1 - p0) * ms
    mid = (p0 + p1) // 2
    term = med[mid:p1 + 1]
    val["p_terminal_negative"] = float(-np.minimum(term, 0.0).sum() * ms)
    val["pr_interval_lead"] = (o - p0) * ms
    out.extra["p_area"] = float(pw.sum() * ms)


def _qrs(beat: _MedianBeat, ms: float, out: _LeadValues) -> None:
    """QRS amplitudes, durations, ratios, notches and the delta wave."""
    val, miss = out.val, out.miss
    q = beat.med[beat.o:beat.j + 1]
    val["qrs_duration_lead"] = (beat.j - beat.o) * ms
    val["qrs_amplitude"] = float(q.max() - q.min())
    val["qrs_area"] = float(q.sum() * ms)
    w = _qrs_waves(q)
    if w["r"] is not None:
        r = w["r"]
        val["r_amplitude"] = float(q[r])
        a, b = _region(q, r, True)
        val["r_duration"] = (b - a + 1) * ms
        val["r_peak_time"] = r * ms
        if w["q"] is not None:
            val["q_amplitude"] = float(-q[w["q"]])
            a, b = _region(q, w["q"], False)
            val["q_duration"] = (b - a + 1) * ms
        else:
            val["q_amplitude"], val["q_duration"] = 0.0, 0.0
        if w["s"] is not None:
            val["s_amplitude"] = float(-q[w["s"]])
            a, b = _region(q, w["s"], False)
            val["s_duration"] = (b - a + 1) * ms
        else:
            val["s_amplitude"], val["s_duration"] = 0.0, 0.0
        if w["rp"] is not None:
            val["r_prime_amplitude"] = float(q[w["rp"]])
        else:
            val["r_prime_amplitude"] = 0.0
        val["q_r_ratio"] = val["q_amplitude"] / val["r_amplitude"]
        if val["s_amplitude"] > 0:
            val["r_s_ratio"] = val["r_amplitude"] / val["s_amplitude"]
        else:
            miss("r_s_ratio", "no S wave (R/S undefined)")
        target, sign = r, 1.0
    elif "qs" in w:
        k = w["qs"]
        a, b = _region(q, k, False)
        depth = float(-q[k])
        val.update(r_amplitude=0.0, r_duration=0.0, r_prime_amplitude=0.0, q_amplitude=depth,
                   q_duration=(b - a + 1) * ms, s_amplitude=depth, s_duration=(b - a + 1) * ms)
        miss(["r_peak_time", "q_r_ratio"], "no R wave (QS complex)")
        val["r_s_ratio"] = 0.0
        target, sign = k, -1.0
    else:
        miss(["r_amplitude", "r_duration", "r_prime_amplitude", "q_amplitude", "q_duration",
              "s_amplitude", "s_duration", "r_peak_time", "q_r_ratio", "r_s_ratio"],
             "no QRS deflection above 0.025 mV")
        target, sign = None, 1.0
    named_idx = (w["r"], w["q"], w["s"], w["rp"], w.get("qs"))
    val["qrs_notch"] = float(sum(1 for e in w["ext"] if e not in named_idx))
    _delta_wave(q, w, target, sign, ms, out)


def _delta_wave(q, w, target, sign, ms, out: _LeadValues) -> None:
    """From the visible start of the upstroke of the first main deflection (0.02 mV from its start:
    QRS onset or the nadir/peak of a preceding q/r) to where its slope first reaches 40 % of its
    steepest value."""
    if target is not None and target >= 2:
        prior = [e for e in w["ext"] if e < target]
        start = prior[-1] if prior else 0
        seg = (q[start:target + 1] - q[start]) * sign
        d = np.diff(seg)
        dmax = d.max() if d.size else 0.0
        vis = np.nonzero(seg > 0.02)[0]
        if dmax > 0 and vis.size:
            steep = int(np.argmax(d >= 0.4 * dmax))
            out.val["delta_wave"] = float(max(0, steep - vis[0] + 1) * ms)
        else:
            out.miss("delta_wave", "no upstroke in the QRS")
    elif target is not None:
        out.val["delta_wave"] = 0.0
    else:
        out.miss("delta_wave", "no QRS deflection above 0.025 mV")


def _st(beat: _MedianBeat, fs: float, out: _LeadValues) -> None:
    med, j, n = beat.med, beat.j, beat.med.size
    for key, dt in (("st_j", 0.0), ("st_j60", 0.06)):
        k = j + int(round(dt * fs))
        if k < n:
            out.val[key] = float(med[k])
        else:
            out.miss(key, "median beat ends before the ST point")
    k80 = j + int(round(0.08 * fs))
    if k80 < n:
        out.val["st_slope"] = float((med[k80] - med[j]) / 0.08)
    else:
        out.miss("st_slope", "median beat ends before J+80 ms")


def _t_and_u(beat: _MedianBeat, fs: float, ms: float, rr_med: float, out: _LeadValues) -> None:
    val, miss = out.val, out.miss
    med, o, j, n = beat.med, beat.o, beat.j, beat.med.size
    toff_rel, pr_rel = beat.toff_rel, beat.pr_rel
    t_keys = ["t_amplitude", "t_duration", "t_area", "t_symmetry", "qt_interval_lead",
              "u_wave_amplitude"]
    if np.isnan(toff_rel):
        miss(t_keys, "T offset missing")
        return
    if o + toff_rel <= j + 2 or o + toff_rel >= n:
        miss(t_keys, "T offset not inside the beat after the QRS")
        return
    te = o + int(round(toff_rel))
    val["qt_interval_lead"] = (te - o) * ms
    seg = med[j:te + 1]
    tp_rel = beat.t_peak_rel
    if not np.isnan(tp_rel) and j < o + tp_rel < te:
        c = int(round(o + tp_rel)) - j
        lo, hi = max(0, c - int(0.02 * fs)), min(seg.size, c + int(0.02 * fs) + 1)
        c = lo + _largest(seg[lo:hi])
    else:
        c = _largest(seg)
    tpk = j + c
    # T onset: the point between J and the T peak farthest behind the chord J → peak
    ts = 0
    if c > 1:
        chord = med[j] + (med[tpk] - med[j]) * np.arange(c + 1) / c
        sgn = 1.0 if med[tpk] >= med[j] else -1.0
        behind = (chord - med[j:tpk + 1]) * sgn
        ts = int(np.argmax(behind)) if behind.max() > 0 else 0
    t0 = j + ts
    val["t_amplitude"] = float(med[tpk])
    val["t_duration"] = (te - t0) * ms
    val["t_area"] = float(med[t0:te + 1].sum() * ms)
    if te > tpk and tpk > t0:
        val["t_symmetry"] = (tpk - t0) / (te - tpk)
    else:
        miss("t_symmetry", "T peak at a T boundary")
    # U: the largest interior extremum after T offset, before the next P / QRS
    u_end = n - 1
    if not np.isnan(rr_med):
        nxt = rr_med + (pr_rel if not np.isnan(pr_rel) else 0.0) - 0.02 * fs
        u_end = int(min(u_end, o + nxt, te + 0.25 * fs))
    uw = med[te:u_end + 1]
    if uw.size >= 5:
        interior = [i for i in range(1, uw.size - 1)
                    if (uw[i] - uw[i - 1]) * (uw[i + 1] - uw[i]) <= 0 and uw[i] != uw[i - 1]]
        val["u_wave_amplitude"] = float(uw[max(interior, key=lambda i: abs(uw[i]))]) \
            if interior else 0.0
    else:
        miss("u_wave_amplitude", "no room after the T wave before the next beat")


def _lead_features(raw: np.ndarray, fs: float, fd: dict | None, rr_med: float) -> tuple[dict, dict, dict]:
    """The lead features of one lead: baseline drift, then (with a delineation) the median beat
    and each wave's measurements; ``(values, reason of each missing value, extra)``."""
    out = _LeadValues()
    ms = 1000.0 / fs
    if not np.all(np.isfinite(raw)):
        for k in out.keys:
            out.why[k] = "signal contains NaN or infinite values"
        return out.result()
    # baseline drift needs no delineation
    if raw.size > 3 * fs:
        sos = sps.butter(4, 0.5, "lowpass", fs=fs, output="sos")
        lp = sps.sosfiltfilt(sos, raw)
        out.val["baseline_drift"] = float(lp.max() - lp.min())
    else:
        out.miss("baseline_drift", "record shorter than 3 s")
    if fd is None:
        out.miss(out.keys, "lead not delineated")
        return out.result()
    beat = _median_beat(raw, fs, fd, rr_med, out)
    if beat is None:
        return out.result()
    _noise(raw, fs, beat, out)
    _p_wave(beat, ms, out)
    _qrs(beat, ms, out)
    _st(beat, fs, out)
    _t_and_u(beat, fs, ms, rr_med, out)
    return out.result()


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------

def _sex_code(sex) -> float:
    """:func:`ecgkit.vocabulary.sex_code`, NaN for a value it does not understand (named in ``missing``)."""
    return sex_code(sex, errors="nan")


#: Limb leads as combinations of I and II (Einthoven: III = II − I; Goldberger: aVR = −(I + II)/2,
#: aVL = I − II/2, aVF = II − I/2).
_LIMB_BASIS = {"I": (1.0, 0.0), "II": (0.0, 1.0), "III": (-1.0, 1.0), "aVR": (-0.5, -0.5),
               "aVL": (1.0, -0.5), "aVF": (-0.5, 1.0)}


def _i_avf(areas: dict) -> tuple[float, float]:
    """Areas in I and aVF: measured when both are, else derived from any two (or more) limb
    leads that were measured (least squares on the Einthoven/Goldberger relations)."""
    ai, af = areas.get("I", np.nan), areas.get("aVF", np.nan)
    if not (np.isnan(ai) or np.isnan(af)):
        return ai, af
    have = [ld for ld, v in areas.items() if not np.isnan(v)]
    if len(have) < 2:
        return np.nan, np.nan
    a = np.array([_LIMB_BASIS[ld] for ld in have])
    if np.linalg.matrix_rank(a) < 2:
        return np.nan, np.nan
    (i, ii), *_ = np.linalg.lstsq(a, np.array([areas[ld] for ld in have]), rcond=None)
    return float(i), float(ii - 0.5 * i)


def pad_leads(signal, leads) -> np.ndarray:
    """A record with some of the 12 leads (samples × len(leads), named ``leads``, e.g.
    ``["I", "II"]`` or ``["MLII", "V1"]``; MLII counts as II) → samples × 12 in :data:`LEADS`
    order, the missing leads all NaN (so they are "not measured", never guessed)."""
    x = np.asarray(signal, dtype=float)
    x = x[:, None] if x.ndim == 1 else x
    names = [str(ld) for ld in leads]
    if len(names) != x.shape[1]:
        raise ValueError(f"{len(names)} lead names for {x.shape[1]} leads")
    from ..data.wfdb_io import standard_lead

    out = np.full((x.shape[0], len(LEADS)), np.nan)
    for j, name in enumerate(names):
        std = standard_lead(name)
        if std is None:
            raise ValueError(f"unknown lead {name!r}; leads are {list(LEADS)} (or MLII)")
        out[:, LEADS.index(std)] = x[:, j]
    return out


def _axis(area_i: float, area_avf: float) -> float:
    return float(np.degrees(np.arctan2(area_avf, area_i)))


def extract_features(signal, fs: float, fiducials: pd.DataFrame, age=None, sex=None,
                     leads=None) -> tuple[pd.Series, dict[str, str]]:
    """Measure the ALFRED features of one 12-lead record.

    ``signal``: samples × 12 (mV, :data:`LEADS` order); ``fs``: Hz; ``fiducials``: the
    delineation (see the module docstring), in samples at ``fs``; ``age`` in years, ``sex`` 0/1
    (PTB-XL: 0 male, 1 female) or "M"/"F".

    ``leads``: names of the columns of ``signal`` when it has fewer than 12 (see
    :func:`pad_leads`); a missing lead (or an all-NaN column) gives NaN lead features with the
    reason "lead not recorded", and the rules that need it are undetermined.

    Returns ``(features, missing)``: a float Series indexed by :func:`feature_names` (NaN where
    a feature could not be measured) and a dict ``name -> reason`` for every NaN.
    """
    x = pad_leads(signal, leads) if leads is not None else np.asarray(signal, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(LEADS):
        raise ValueError(f"signal must be samples × {len(LEADS)}, got shape {x.shape}")
    fs = float(fs)
    for c in ("lead", "beat", "qrs_on", "qrs_off"):
        if c not in fiducials:
            raise ValueError(f"fiducials lack the column {c!r}")
    values: dict[str, float] = {}
    missing: dict[str, str] = {}

    # ---- global rhythm and intervals
    g = _fid_arrays(fiducials, None)
    gk = [f.key for f in GLOBAL_FEATURES]
    gv = {k: np.nan for k in gk}
    rr_med = np.nan
    n_samples = x.shape[0]
    if g is None or (~np.isnan(g["qrs_on"])).sum() == 0:
        for k in gk:
            missing[k] = "no beats delineated"
    else:
        rp = g["r_peak"]
        if np.isnan(rp).all():
            rp = g["qrs_on"]
        # beats within EDGE_MS of either end may be truncated: no RR interval uses them
        rp = counted(rp[~np.isnan(rp)], n_samples, fs)
        rr = np.diff(rp) / fs * 1000.0  # ms
        if rr.size >= 1:
            rr_mean = float(rr.mean())
            rr_med = float(np.median(rr)) / 1000.0 * fs
            gv["heart_rate"] = 60000.0 / rr_mean
        else:
            rr_mean = np.nan
            missing["heart_rate"] = f"fewer than 2 beats (at least {EDGE_MS:.0f} ms from the ends)"
        if rr.size >= 2:
            gv["rr_sd"] = float(rr.std())
            gv["rr_irregularity"] = float(np.sqrt(np.mean(np.diff(rr) ** 2)) / rr_mean)
        else:
            for k in ("rr_sd", "rr_irregularity"):
                missing[k] = f"fewer than 3 beats (at least {EDGE_MS:.0f} ms from the ends)"
        beats = ~np.isnan(g["qrs_on"])
        pr_all = g["qrs_on"] - g["p_on"]
        plausible = beats & (pr_all >= PR_RANGE_MS[0] * fs / 1000) & (pr_all <= PR_RANGE_MS[1] * fs / 1000)
        # beats too close to the start for their P wave to be recorded do not count
        pr_s = np.median(pr_all[plausible]) if plausible.any() else 0.25 * fs
        beats = beats & (np.nan_to_num(g["qrs_on"], nan=-1.0) >= pr_s + 0.02 * fs)
        if not beats.any():
            beats = ~np.isnan(g["qrs_on"])
        # a P wave counts when its PR interval is plausible and within PR_TOLERANCE_MS of the
        # record's median PR: sinus-conducted P waves keep a constant PR, fibrillatory or
        # flutter waves taken for P waves do not
        cand = beats & plausible
        has_p = cand & (np.abs(pr_all - (np.median(pr_all[cand]) if cand.any() else 0.0))
                        <= PR_TOLERANCE_MS * fs / 1000)
        gv["p_wave_ratio"] = float(has_p.sum() / beats.sum())
        if has_p.any():
            gv["pr_interval"] = float(np.median(g["qrs_on"][has_p] - g["p_on"][has_p]) / fs * 1000)
        else:
            missing["pr_interval"] = "no P wave detected"
        okq = beats & ~np.isnan(g["qrs_off"])
        if okq.any():
            gv["qrs_duration"] = float(np.median(g["qrs_off"][okq] - g["qrs_on"][okq]) / fs * 1000)
        else:
            missing["qrs_duration"] = "QRS offset missing"
        okt = beats & ~np.isnan(g["t_off"])
        if okt.any():
            qt = float(np.median(g["t_off"][okt] - g["qrs_on"][okt]) / fs * 1000)
            gv["qt_interval"] = qt
            if not np.isnan(rr_mean):
                gv["qtc_bazett"] = qt / math.sqrt(rr_mean / 1000.0)
                gv["qtc_fridericia"] = qt / (rr_mean / 1000.0) ** (1.0 / 3.0)
            else:
                for k in ("qtc_bazett", "qtc_fridericia"):
                    missing[k] = "fewer than 2 beats (no RR interval)"
        else:
            for k in ("qt_interval", "qtc_bazett", "qtc_fridericia"):
                missing[k] = "T offset missing"

    # ---- lead features
    lead_vals = {}
    for li, lead in enumerate(LEADS):
        fd = _fid_arrays(fiducials, lead)
        if fd is None and g is not None:
            fd = g  # no per-lead rows: use the global boundaries
        if np.isnan(x[:, li]).all():
            v = {f.key: np.nan for f in LEAD_FEATURES}
            why = {k: "lead not recorded" for k in v}
            extra = {"p_area": np.nan}
        else:
            v, why, extra = _lead_features(x[:, li], fs, fd, rr_med)
        lead_vals[lead] = {**v, **extra}
        for k, val in v.items():
            values[f"{k}_{lead}"] = val
        for k, r in why.items():
            missing[f"{k}_{lead}"] = r

    # ---- axes from net areas in I and aVF
    area_keys = {"p_axis": ("p_area", "P"), "qrs_axis": ("qrs_area", "QRS"), "t_axis": ("t_area", "T")}
    for key, (src, wave) in area_keys.items():
        if key in missing:
            continue
        ai, af = _i_avf({ld: lead_vals[ld][src] for ld in _LIMB_BASIS})
        if np.isnan(ai) or np.isnan(af):
            missing[key] = f"no {wave} wave area in lead I and aVF (nor in two other limb leads)"
        elif ai == 0 and af == 0:
            missing[key] = f"{wave} areas in I and aVF are both zero"
        else:
            gv[key] = _axis(ai, af)
    for k in gk:
        values[k] = gv[k]

    values["age"] = float(age) if age is not None and np.isfinite(float(age)) else np.nan
    if np.isnan(values["age"]):
        missing["age"] = "age not given"
    values["sex"] = _sex_code(sex)
    if np.isnan(values["sex"]):
        missing["sex"] = "sex not given" if sex is None else f"sex {sex!r} not understood"
    s = pd.Series(values, dtype=float).reindex(feature_names())
    for name in s.index[s.isna()]:
        missing.setdefault(name, "not measurable")
    missing = {k: missing[k] for k in s.index if k in missing and np.isnan(s[k])}
    return s, missing



def extract_features_many(signals, fs: float, fiducials: list, ages=None, sexes=None, ids=None,
                          progress: bool = True, leads=None) -> tuple[pd.DataFrame, dict]:
    """Features of many records: (records × features table, {record: problem} for records that
    could not be measured at all). A record that fails keeps its row (all NaN) and is reported."""
    from tqdm import tqdm

    n = len(fiducials)
    ids = list(range(n)) if ids is None else list(ids)
    ages = [None] * n if ages is None else list(ages)
    sexes = [None] * n if sexes is None else list(sexes)
    rows, failed = [], {}
    for i in tqdm(range(n), desc="features", disable=not progress, mininterval=2.0):
        try:
            values, _ = extract_features(np.asarray(signals[i]), fs, fiducials[i], ages[i], sexes[i],
                                         leads=leads)
        except Exception as exc:  # one bad record never stops the table
            failed[ids[i]] = f"{type(exc).__name__}: {exc}"
            values = pd.Series(np.nan, index=feature_names())
        rows.append(values)
    table = pd.DataFrame(rows, index=pd.Index(ids, name="record"))
    return table, failed
