"""The delineator against cardiologists: folds by record, out-of-fold delineation, scoring.

Scoring follows the field (LUDB: Kalyakulina et al. 2020; Moskalenko et al. 2019): each fiducial
matched one to one within 150 ms in each lead, sensitivity, positive predictive value and the
mean ± SD of the signed error (ours − cardiologist, ms). Boundaries at a stretch's edge or next to
unmarked samples are nobody's and are left out on both sides (see
:func:`ecgkit.data.delineation.wave_boundaries`); T onsets are not scored on the QT Database
(it does not mark them).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...data.delineation import UNMARKED, AnnotatedECG, wave_boundaries
from .scoring import neurokit_fiducials, score_delineation

#: The fiducials scored against cardiologists, and those a database does not mark.
FIDUCIALS = ("p_on", "p_off", "qrs_on", "qrs_off", "t_on", "t_off")
NOT_MARKED = {"qtdb": ("t_on",)}


def record_folds(ecgs: list[AnnotatedECG], k: int = 5, seed: int = 0) -> dict[str, int]:
    """Fold (1…k) of each patient record (:attr:`AnnotatedECG.group`): the records of each
    database in a seeded random order, dealt round-robin, so every fold holds both databases and
    every stretch of a record falls in the same fold."""
    folds: dict[str, int] = {}
    rng = np.random.default_rng(seed)
    for db in sorted({e.database for e in ecgs}):
        groups = sorted({e.group for e in ecgs if e.database == db})
        for i, g in enumerate(rng.permutation(groups)):
            folds[str(g)] = i % k + 1
    return folds


def _keep_marked(pred: pd.DataFrame, labels: np.ndarray, leads) -> pd.DataFrame:
    """Predicted boundaries at the stretch's edge or on an unmarked sample set to −1."""
    pred = pred[pred["lead"].astype(str) != "all"].copy()
    n = labels.shape[0]
    col_of = {str(name): j for j, name in enumerate(leads)}
    j = pred["lead"].astype(str).map(col_of).to_numpy()
    ok_lead = ~pd.isna(j)
    j = np.where(ok_lead, j, 0).astype(int)
    for fid in FIDUCIALS:
        if fid not in pred:
            continue
        v = pred[fid].to_numpy(np.int64)
        inside = (v > 0) & (v < n - 1) & ok_lead
        a = np.clip(v - 1, 0, n - 1)
        b = np.clip(v, 0, n - 1)
        marked = (labels[a, j] != UNMARKED) & (labels[b, j] != UNMARKED)
        pred[fid] = np.where(inside & marked, v, -1)
    return pred


def score_against_cardiologists(ecgs: list[AnnotatedECG], predictions: list[pd.DataFrame],
                                tolerance_ms: float = 150.0) -> pd.DataFrame:
    """Se, PPV and error (ms) per database and fiducial of ``predictions`` (one fiducials frame
    per ECG, samples at the ECG's rate, leads named as in the ECG) against the cardiologists'
    boundaries. Index (database, fiducial)."""
    out = []
    for db in dict.fromkeys(e.database for e in ecgs):
        truths, preds, fs = [], [], None
        for i, (e, p) in enumerate(zip(ecgs, predictions)):
            if e.database != db:
                continue
            fs = e.fs
            leads = [str(x) for x in e.leads]
            truths.append(wave_boundaries(e.labels, leads).assign(ecg_id=i))
            if p is not None and len(p):
                preds.append(_keep_marked(p.assign(lead=p["lead"].astype(str)), e.labels, leads).assign(ecg_id=i))
        truth = pd.concat(truths, ignore_index=True)
        pred = pd.concat(preds, ignore_index=True) if preds else truth.iloc[:0]
        fids = [f for f in FIDUCIALS if f not in NOT_MARKED.get(db, ())]
        scores = score_delineation(pred, truth, fs, tolerance_ms, fiducials=fids)
        out.append(scores.assign(database=db).reset_index())
    return pd.concat(out, ignore_index=True).set_index(["database", "fiducial"])


def out_of_fold(ecgs: list[AnnotatedECG], folds: dict[str, int], models: dict[int, object],
                final=None) -> list[pd.DataFrame]:
    """Each ECG delineated by the model of its record's fold (trained without it); an ECG whose
    record is in no fold by ``final`` (a model that never saw it)."""
    from .inference import delineate

    out = []
    for e in ecgs:
        fold = folds.get(e.group)
        model = models[fold] if fold is not None else final
        if model is None:
            raise ValueError(f"{e.name}: its record is in no fold and no final model was given")
        leads = [str(x) for x in e.leads]
        with np.errstate(all="ignore"):
            out.append(delineate(e.signal, e.fs, model=model, leads=leads))
    return out


def neurokit_on(ecgs: list[AnnotatedECG], method: str = "dwt", progress: bool = False) -> list[pd.DataFrame]:
    """NeuroKit2's delineation (``ecg_peaks`` + ``ecg_delineate``) of every lead of every ECG."""
    from tqdm.auto import tqdm

    out = []
    for e in tqdm(ecgs, desc=f"neurokit2 {method}", disable=not progress):
        frames = [neurokit_fiducials(e.signal[:, j], e.fs, method, lead=str(name))
                  for j, name in enumerate(e.leads)]
        frames = [f for f in frames if len(f)]
        out.append(pd.concat(frames, ignore_index=True) if frames else None)
    return out


def error_table(ecgs: list[AnnotatedECG], predictions: list[pd.DataFrame],
                tolerance_ms: float = 150.0) -> pd.DataFrame:
    """Every matched boundary's signed error (ms) with its database and fiducial: for plotting
    the error distributions."""
    from .scoring import _match

    rows = []
    for e, p in zip(ecgs, predictions):
        if p is None or not len(p):
            continue
        leads = [str(x) for x in e.leads]
        truth = wave_boundaries(e.labels, leads)
        pred = _keep_marked(p.assign(lead=p["lead"].astype(str)), e.labels, leads)
        tol = tolerance_ms * e.fs / 1000.0
        for lead in leads:
            t_lead, p_lead = truth[truth["lead"] == lead], pred[pred["lead"] == lead]
            for fid in FIDUCIALS:
                if fid in NOT_MARKED.get(e.database, ()):
                    continue
                t = t_lead[fid].to_numpy(float)
                q = p_lead[fid].to_numpy(float)
                t, q = t[t >= 0], q[q >= 0]
                for a, b in _match(t, q, tol):
                    rows.append((e.database, fid, (q[b] - t[a]) * 1000.0 / e.fs))
    return pd.DataFrame(rows, columns=["database", "fiducial", "error_ms"])
