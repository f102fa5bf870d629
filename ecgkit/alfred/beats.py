"""Beats that hold on real ECGs: QRS anchors for the delineation and their agreement with a
reference detector.

The U-Net of :mod:`ecgkit.alfred.delineation` labels every lead on its own. On real records a
noisy lead (muscle noise, a loose electrode, a step) gets spurious QRS labels, and a vote over
leads lets a few of them through as extra beats, which inflate the heart rate and make every
rhythm irregular. So the beats are *anchored* on a proven QRS detector instead:

* :func:`combination_signal`: every lead band-passed (5–30 Hz, the QRS band), divided by its
  typical QRS amplitude (98th percentile of the absolute band-passed signal) and clipped at 1.5 of
  it (an artefact in one lead cannot drown the others), weighted by how far the 99th percentile
  of its absolute slope stands above its median slope (a clean lead's QRS slopes stand far above
  its baseline; a noisy lead's do not), and combined as the root of the sum of squares: one
  QRS-energy signal per record.
* :func:`qrs_anchors`: NeuroKit2's ``ecg_peaks`` (its default gradient method) on that signal:
  one R-peak sample per beat, about 5 ms per record.

The U-Net keeps the wave boundaries: :func:`ecgkit.alfred.delineation.align_beats` attaches each
lead's QRS segment to an anchor and drops the lead detections no anchor confirms.

**Edge beats.** A beat whose R peak lies within :data:`EDGE_MS` of the record's first or last
sample may be truncated; :func:`counted` leaves it out of beat counts and RR intervals (it keeps
its fiducials).

:func:`beat_agreement` measures the beats against an independent reference detector (wfdb's
``xqrs_detect`` or NeuroKit2's ``ecg_clean`` + ``ecg_peaks`` on one lead, lead II by default), and
:func:`worst_records` picks the records that disagree most (for a plot).
:func:`reference_peaks_many` runs a reference detector over many leads, cached by their content.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

__all__ = ["EDGE_MS", "BAND_HZ", "combination_signal", "qrs_anchors", "counted", "rr_intervals",
           "reference_peaks", "beat_agreement", "agreement_summary", "worst_records"]

#: Beats whose R peak is closer than this to either end of the record are not counted.
EDGE_MS = 100.0
#: Band of the combination signal (Hz).
BAND_HZ = (5.0, 30.0)


def combination_signal(x: np.ndarray, fs: float) -> np.ndarray:
    """One QRS-energy signal from ``x`` (samples × leads, or samples): see the module doc.

    Leads that are all NaN, constant or not finite are left out; the result is zeros when no
    lead is usable."""
    from scipy import signal as sps

    x = np.asarray(x, dtype=float)
    x = x[:, None] if x.ndim == 1 else x
    n = x.shape[0]
    ok = np.isfinite(x).all(0) & (np.nanstd(x, 0) > 1e-6) if n else np.zeros(x.shape[1], bool)
    if not ok.any() or n < 20:
        return np.zeros(n)
    x = x[:, ok]
    hi = min(BAND_HZ[1], 0.45 * fs)
    sos = sps.butter(2, [BAND_HZ[0], hi], "bandpass", fs=fs, output="sos")
    padlen = min(n - 1, 3 * (2 * len(sos) + 1))
    y = sps.sosfiltfilt(sos, x, axis=0, padlen=padlen)
    g = np.abs(np.gradient(y, axis=0))
    med, p99 = np.percentile(g, [50, 99], axis=0)
    p99 = np.maximum(p99, 1e-9)
    weight = p99 / np.maximum(med, 1e-9)
    weight = weight / weight.max()
    # each lead in units of its typical QRS amplitude (98th percentile of |y|), clipped at 1.5 so
    # that an artefact in one lead (a step, an electrode pop) cannot drown the others' QRS
    amp = np.maximum(np.percentile(np.abs(y), 98, axis=0), 1e-9)
    z = np.clip(y / amp[None, :], -1.5, 1.5) * weight[None, :]
    return np.sqrt((z ** 2).sum(1))


def qrs_anchors(x: np.ndarray, fs: float, energy: np.ndarray | None = None) -> np.ndarray:
    """R-peak samples of a record (samples × leads, or samples) at ``fs``: NeuroKit2's
    ``ecg_peaks`` on :func:`combination_signal` (or the given ``energy``, that signal already
    computed). Empty when nothing is found (or NeuroKit2 fails)."""
    import neurokit2 as nk

    c = combination_signal(x, fs) if energy is None else np.asarray(energy, dtype=float)
    if c.size < fs or not np.any(c > 0):
        return np.zeros(0, dtype=np.int64)
    # NeuroKit2's method takes no peak in its first 300 ms (it starts from a virtual peak at 0):
    # a flat lead-in of 0.4 s lets it find a beat at the very start
    pad = int(round(0.4 * fs))
    c = np.concatenate([np.zeros(pad), c])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, info = nk.ecg_peaks(c, sampling_rate=int(round(fs)))
    except Exception:  # neurokit raises assorted errors on degenerate signals
        return np.zeros(0, dtype=np.int64)
    r = np.asarray(info["ECG_R_Peaks"], dtype=np.int64) - pad
    return np.unique(r[(r >= 0) & (r < c.size - pad)])


def counted(r_peaks, n_samples: int, fs: float, edge_ms: float = EDGE_MS) -> np.ndarray:
    """The R peaks (sorted) that count as beats: at least ``edge_ms`` from both ends."""
    r = np.sort(np.asarray(r_peaks, dtype=float))
    r = r[np.isfinite(r) & (r >= 0)]
    e = edge_ms * fs / 1000.0
    return r[(r >= e) & (r <= n_samples - 1 - e)]


def rr_intervals(r_peaks, n_samples: int, fs: float, edge_ms: float = EDGE_MS) -> np.ndarray:
    """RR intervals (ms) between the counted beats (:func:`counted`)."""
    return np.diff(counted(r_peaks, n_samples, fs, edge_ms)) * 1000.0 / fs


def _hr(rr_ms: np.ndarray) -> float:
    return 60000.0 / float(np.mean(rr_ms)) if rr_ms.size else np.nan


def reference_peaks(signal_lead, fs: float, method: str = "xqrs") -> np.ndarray:
    """R peaks of one lead by a reference detector: ``"xqrs"`` (wfdb ``xqrs_detect``) or
    ``"neurokit"`` (NeuroKit2 ``ecg_clean`` then ``ecg_peaks``). Empty on failure."""
    x = np.asarray(signal_lead, dtype=float)
    if x.size < fs or not np.all(np.isfinite(x)) or np.std(x) < 1e-6:
        return np.zeros(0, dtype=np.int64)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method == "xqrs":
                import logging

                import wfdb.processing as wp

                level = logging.getLogger().level
                logging.disable(logging.WARNING)
                try:
                    r = wp.xqrs_detect(x, fs=fs, verbose=False)
                finally:
                    logging.disable(logging.NOTSET)
                    logging.getLogger().setLevel(level)
            elif method == "neurokit":
                import neurokit2 as nk

                clean = nk.ecg_clean(x, sampling_rate=int(round(fs)))
                _, info = nk.ecg_peaks(clean, sampling_rate=int(round(fs)))
                r = info["ECG_R_Peaks"]
            else:
                raise ValueError(f"unknown reference method {method!r}")
    except ValueError:
        raise
    except Exception:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.asarray(r, dtype=np.int64))


def reference_peaks_many(leads, fs: float, method: str = "xqrs", cache: bool = True) -> list[np.ndarray]:
    """:func:`reference_peaks` of each lead in ``leads`` (1-D signals); with ``cache`` the peaks are
    kept under the key of the signals, the rate, the method and the detectors' versions
    (``reference_peaks``), and one line says whether they were computed or read."""
    leads = [np.asarray(x, dtype=float) for x in leads]

    def compute():
        return [reference_peaks(x, fs, method) for x in leads]

    if not cache:
        return compute()
    import neurokit2
    import wfdb

    from ..cache import build_or_load
    from ..hashing import content_sha256

    spec = {"signals": content_sha256(*leads), "fs": float(fs), "method": method,
            "versions": [wfdb.__version__, neurokit2.__version__]}

    def build(folder):
        peaks = compute()
        np.savez(folder / "peaks.npz", peaks=np.concatenate(peaks) if peaks else np.zeros(0, np.int64),
                 counts=np.array([len(p) for p in peaks], dtype=np.int64))

    def load(folder):
        with np.load(folder / "peaks.npz") as z:
            return [p.astype(np.int64) for p in np.split(z["peaks"], np.cumsum(z["counts"])[:-1])] \
                if len(z["counts"]) else []

    peaks, k, built = build_or_load("reference_peaks", spec, build, load)
    print(f"{method} R peaks of {len(leads)} leads: {'computed and cached' if built else 'from cache'} (key {k})",
          flush=True)
    return peaks


def _our_peaks(fid: pd.DataFrame) -> np.ndarray:
    g = fid[fid["lead"].astype(str) == "all"] if len(fid) else fid
    if len(g) == 0 and len(fid):
        g = fid.groupby("beat")[["r_peak"]].median()
    r = g["r_peak"].to_numpy(dtype=float) if len(g) else np.zeros(0)
    return r[r >= 0]


def beat_agreement(signals, fs: float, fiducials, reference: str = "xqrs", lead: int = 1,
                   ids=None, edge_ms: float = EDGE_MS, count_tolerance: int = 1,
                   hr_tolerance: float = 3.0, reference_peaks_list=None
                   ) -> tuple[pd.DataFrame, dict]:
    """Our beats against a reference detector, record by record.

    ``signals``: records × samples × leads (mV); ``fiducials``: one delineation frame per record
    (:func:`ecgkit.alfred.delineation.delineate`; its ``lead == "all"`` rows are the beats);
    ``reference``: ``"xqrs"`` or ``"neurokit"`` (:func:`reference_peaks`) run on column ``lead``
    (1 = lead II in the standard order), or precomputed ``reference_peaks_list``. Both sides
    count only the beats at least ``edge_ms`` from the record's ends (:func:`counted`); heart
    rates are 60 000 / mean RR of those beats.

    Returns ``(table, summary)``: per record ``n_ours, n_ref, diff, hr_ours, hr_ref, hr_diff``,
    ``count_ok`` (|diff| ≤ ``count_tolerance``), ``hr_ok`` (|hr_diff| ≤ ``hr_tolerance`` bpm);
    the summary holds the shares of records that agree, the mean absolute differences and the
    totals.
    """
    rows = []
    ids = list(range(len(fiducials))) if ids is None else list(ids)
    for k, fid in enumerate(fiducials):
        x = np.asarray(signals[k])
        n = x.shape[0]
        if reference_peaks_list is not None:
            ref = np.asarray(reference_peaks_list[k])
        else:
            ref = reference_peaks(x[:, lead] if x.ndim == 2 else x, fs, reference)
        ours = counted(_our_peaks(fid), n, fs, edge_ms)
        theirs = counted(ref, n, fs, edge_ms)
        hr_o, hr_r = _hr(np.diff(ours) * 1000.0 / fs), _hr(np.diff(theirs) * 1000.0 / fs)
        rows.append({"record": ids[k], "n_ours": len(ours), "n_ref": len(theirs),
                     "diff": len(ours) - len(theirs), "hr_ours": hr_o, "hr_ref": hr_r,
                     "hr_diff": hr_o - hr_r})
    table = pd.DataFrame(rows).set_index("record")
    table["count_ok"] = table["diff"].abs() <= count_tolerance
    table["hr_ok"] = (table["hr_diff"].abs() <= hr_tolerance).fillna(False).astype(bool)
    ran = table["n_ref"] >= 2          # records where the reference found at least 2 beats
    summary = {"reference": reference if reference_peaks_list is None else "given",
               "records": len(table),
               "reference_failed": int((~ran).sum()),
               "count_within_where_reference_ran": float(table["count_ok"][ran].mean())
               if ran.any() else np.nan,
               "hr_within_where_reference_ran": float(table["hr_ok"][ran].mean())
               if ran.any() else np.nan,
               "count_within": float(table["count_ok"].mean()) if len(table) else np.nan,
               "hr_within": float(table["hr_ok"].mean()) if len(table) else np.nan,
               "count_tolerance": count_tolerance, "hr_tolerance_bpm": hr_tolerance,
               "mean_abs_count_diff": float(table["diff"].abs().mean()) if len(table) else np.nan,
               "mean_abs_hr_diff": float(table["hr_diff"].abs().mean()) if len(table) else np.nan,
               "beats_ours": int(table["n_ours"].sum()), "beats_ref": int(table["n_ref"].sum()),
               "edge_ms": edge_ms}
    return table, summary


def agreement_summary(tables: dict, lead: str = "II") -> tuple[pd.DataFrame, pd.Series]:
    """Several references side by side: ``tables`` maps a reference name to its
    :func:`beat_agreement` table (the same records). Returns the summary (one column per
    reference: shares of records within the tolerances, on all records and on those where the
    references agree with each other, ±1 beat; beat totals; mean |HR difference|) and the
    boolean mask of the records where the references agree."""
    counts = pd.DataFrame({name: t["n_ref"] for name, t in tables.items()})
    agree = (counts.max(axis=1) - counts.min(axis=1)) <= 1
    summary = pd.DataFrame({
        f"vs {name} (lead {lead})": {
            "records": len(t),
            "beat count within ±1, all records": t["count_ok"].mean(),
            "heart rate within 3 bpm, all records": t["hr_ok"].mean(),
            "beat count within ±1, references agree": t.loc[agree, "count_ok"].mean(),
            "heart rate within 3 bpm, references agree": t.loc[agree, "hr_ok"].mean(),
            "records where the references agree": int(agree.sum()),
            "beats (ours)": int(t["n_ours"].sum()), "beats (reference)": int(t["n_ref"].sum()),
            "mean |HR difference| (bpm)": t["hr_diff"].abs().mean()}
        for name, t in tables.items()})
    return summary, agree


def worst_records(table: pd.DataFrame, n: int = 5) -> pd.Index:
    """The ``n`` records of a :func:`beat_agreement` table that disagree most (count difference
    first, then heart-rate difference)."""
    key = pd.DataFrame({"c": table["diff"].abs(), "h": table["hr_diff"].abs().fillna(np.inf)})
    return key.sort_values(["c", "h"], ascending=False).index[:n]
