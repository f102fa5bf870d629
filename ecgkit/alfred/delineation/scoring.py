"""Scoring a delineation against ground truth, and NeuroKit2's delineation for comparison."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ...vocabulary import LEADS
from .labels import FS, OUTPUT_COLUMNS


#: Fiducials scored by :func:`score_delineation`.
SCORED = ("p_on", "p_off", "qrs_on", "qrs_off", "r_peak", "t_off")


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------

def _match(truth: np.ndarray, pred: np.ndarray, tol: float) -> list[tuple[int, int]]:
    """One-to-one matches within ``tol`` samples, closest pairs first."""
    if truth.size == 0 or pred.size == 0:
        return []
    d = np.abs(pred[None, :] - truth[:, None]).astype(float)
    ti, pi = np.nonzero(d <= tol)
    order = np.argsort(d[ti, pi], kind="stable")
    used_t, used_p, pairs = set(), set(), []
    for k in order:
        a, b = int(ti[k]), int(pi[k])
        if a not in used_t and b not in used_p:
            used_t.add(a)
            used_p.add(b)
            pairs.append((a, b))
    return pairs


def _groups(df: pd.DataFrame, keys: list[str]) -> dict:
    if not keys:
        return {(): df}
    return {(k if isinstance(k, tuple) else (k,)): g for k, g in df.groupby(keys, sort=False)}


def score_delineation(pred: pd.DataFrame | list, truth: pd.DataFrame | list, fs: float = FS,
                      tolerance_ms: float = 150.0, fiducials=SCORED, errors: dict | None = None) -> pd.DataFrame:
    """Sensitivity, PPV and the error (ms, predicted − true; mean and sd over matches) for each
    fiducial. Points are matched one to one within ``tolerance_ms`` (closest pairs first),
    separately in each (``ecg_id``, ``lead``) group — the keys both frames have. Leads present in
    only one frame (the generator's ``"all"`` rows) are left out. Lists of frames (one per
    record, as :func:`delineate` returns) are numbered as records 0, 1, … ``errors``: a dict that
    receives every matched error (ms) by fiducial.
    """
    def frame(x):
        if isinstance(x, (list, tuple)):
            return pd.concat([f.assign(ecg_id=i) for i, f in enumerate(x)], ignore_index=True)
        return x
    pred, truth = frame(pred), frame(truth)
    keys = [k for k in ("ecg_id", "lead") if k in pred.columns and k in truth.columns]
    if "lead" in keys:
        common = set(map(str, pred["lead"])) & set(map(str, truth["lead"]))
        pred = pred[pred["lead"].astype(str).isin(common)].assign(lead=lambda d: d["lead"].astype(str))
        truth = truth[truth["lead"].astype(str).isin(common)].assign(lead=lambda d: d["lead"].astype(str))
    gp, gt = _groups(pred, keys), _groups(truth, keys)
    tol = tolerance_ms * fs / 1000.0
    rows = []
    for fid in fiducials:
        tp = n_true = n_pred = 0
        found = []
        for key in set(gp) | set(gt):
            t = gt[key][fid].to_numpy() if key in gt and fid in gt[key] else np.zeros(0)
            p = gp[key][fid].to_numpy() if key in gp and fid in gp[key] else np.zeros(0)
            t = t[(t >= 0) & ~pd.isna(t)].astype(float)
            p = p[(p >= 0) & ~pd.isna(p)].astype(float)
            pairs = _match(t, p, tol)
            tp += len(pairs)
            n_true += t.size
            n_pred += p.size
            found += [(p[b] - t[a]) * 1000.0 / fs for a, b in pairs]
        err = np.asarray(found)
        if errors is not None:
            errors[fid] = err
        rows.append({"fiducial": fid, "n_true": n_true, "n_pred": n_pred, "matched": tp,
                     "sensitivity": tp / n_true if n_true else np.nan,
                     "ppv": tp / n_pred if n_pred else np.nan,
                     "mean_error_ms": float(err.mean()) if err.size else np.nan,
                     "sd_error_ms": float(err.std(ddof=1)) if err.size > 1 else np.nan})
    return pd.DataFrame(rows).set_index("fiducial")


# --------------------------------------------------------------------------------------------
# NeuroKit2 for comparison
# --------------------------------------------------------------------------------------------

_NK = {"p_on": "ECG_P_Onsets", "p_peak": "ECG_P_Peaks", "p_off": "ECG_P_Offsets",
       "qrs_on": "ECG_R_Onsets", "qrs_off": "ECG_R_Offsets", "t_on": "ECG_T_Onsets",
       "t_peak": "ECG_T_Peaks", "t_off": "ECG_T_Offsets"}


def _empty(note: str) -> pd.DataFrame:
    out = pd.DataFrame(columns=["lead", "beat", *OUTPUT_COLUMNS])
    out.attrs["note"] = note
    return out


def neurokit_fiducials(signal_lead, fs: float = FS, method: str = "dwt", lead=0) -> pd.DataFrame:
    """NeuroKit2's delineation (``nk.ecg_peaks`` then ``nk.ecg_delineate``) of one lead, in the
    format of :func:`mask_to_fiducials`. A 2-D input (samples × leads) is done lead by lead
    (named as in :data:`LEADS` for 12 leads). Failures give an empty frame with
    ``attrs["note"]`` saying why; ``"peak"`` has no QRS on/offsets (−1).
    """
    x = np.asarray(signal_lead, dtype=float)
    if x.ndim == 2:
        names = list(LEADS) if x.shape[1] == len(LEADS) else list(range(x.shape[1]))
        frames = [neurokit_fiducials(x[:, i], fs, method, lead=names[i]) for i in range(x.shape[1])]
        notes = [f"{names[i]}: {f.attrs['note']}" for i, f in enumerate(frames) if "note" in f.attrs]
        frames = [f for f in frames if len(f)]
        out = pd.concat(frames, ignore_index=True) if frames else _empty("no lead delineated")
        if notes:
            out.attrs["note"] = "; ".join(notes)
        return out
    import neurokit2 as nk

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, info = nk.ecg_peaks(x, sampling_rate=int(round(fs)))
            r = np.asarray(info["ECG_R_Peaks"], dtype=int)
            if r.size < 2:
                return _empty(f"{r.size} R peak(s) found")
            _, waves = nk.ecg_delineate(x, r, sampling_rate=int(round(fs)), method=method)
    except Exception as exc:  # neurokit raises assorted errors on hard signals
        return _empty(f"neurokit2 failed: {type(exc).__name__}: {exc}")
    out = pd.DataFrame({"lead": lead, "beat": np.arange(r.size), "r_peak": r})
    for col, key in _NK.items():
        v = np.asarray(waves.get(key, [np.nan] * r.size), dtype=float)
        if v.size != r.size:
            v = np.full(r.size, np.nan)
        out[col] = np.where(np.isnan(v), -1, v).astype(np.int64)
    return out[["lead", "beat", *OUTPUT_COLUMNS]]
