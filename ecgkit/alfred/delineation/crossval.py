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


def _by_database(ecgs: list[AnnotatedECG], predictions: list[pd.DataFrame]):
    """Per database: the cardiologists' boundaries and ours as two frames (``ecg_id``, ``lead``),
    our boundaries that nobody could have marked left out, the rate and the scored fiducials."""
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
        yield db, truth, pred, fs, [f for f in FIDUCIALS if f not in NOT_MARKED.get(db, ())]


def score_against_cardiologists(ecgs: list[AnnotatedECG], predictions: list[pd.DataFrame],
                                tolerance_ms: float = 150.0) -> pd.DataFrame:
    """Se, PPV and error (ms) per database and fiducial of ``predictions`` (one fiducials frame
    per ECG, samples at the ECG's rate, leads named as in the ECG) against the cardiologists'
    boundaries. Index (database, fiducial)."""
    out = [score_delineation(pred, truth, fs, tolerance_ms, fiducials=fids).assign(database=db).reset_index()
           for db, truth, pred, fs, fids in _by_database(ecgs, predictions)]
    return pd.concat(out, ignore_index=True).set_index(["database", "fiducial"])


def out_of_fold(ecgs: list[AnnotatedECG], folds: dict[str, int], models: dict[int, object],
                final=None, cache: bool = True) -> list[pd.DataFrame]:
    """Each ECG delineated by the model of its record's fold (trained without it); an ECG whose
    record is in no fold by ``final`` (a model that never saw it). Cached (``cache``) by the
    ECGs' fingerprint, the folds and the models' weights, so a rerun reads it."""
    from ...cache import build_or_load
    from ...data.delineation import fingerprint
    from .inference import delineate, model_identity

    def model_for(e):
        fold = folds.get(e.group)
        model = models[fold] if fold is not None else final
        if model is None:
            raise ValueError(f"{e.name}: its record is in no fold and no final model was given")
        return model

    def compute():
        out = []
        for e in ecgs:
            with np.errstate(all="ignore"):
                out.append(delineate(e.signal, e.fs, model=model_for(e), leads=[str(x) for x in e.leads]))
        return out

    if not cache:
        return compute()
    used = {id(model_for(e)): model_for(e) for e in ecgs}
    spec = {"data": fingerprint(ecgs), "folds": {g: f for g, f in sorted(folds.items())},
            "models": sorted(model_identity(m) for m in used.values())}

    def build(folder):
        frames = [f.assign(ecg=i) for i, f in enumerate(compute()) if len(f)]
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["ecg"])
        table.to_csv(folder / "fiducials.csv.gz", index=False)

    def load(folder):
        table = pd.read_csv(folder / "fiducials.csv.gz", dtype={"lead": str})
        groups = {int(k): g.drop(columns="ecg").reset_index(drop=True) for k, g in table.groupby("ecg")}
        from .labels import OUTPUT_COLUMNS

        empty = pd.DataFrame(columns=["lead", "beat", *OUTPUT_COLUMNS])
        return [groups.get(i, empty.copy()) for i in range(len(ecgs))]

    out, k, built = build_or_load("delineator_predictions", spec, build, load)
    print(f"delineations of {len(ecgs)} annotated ECGs by {len(used)} model(s): "
          f"{'computed and cached' if built else 'from cache'} (key {k})", flush=True)
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
    """Every matched boundary's signed error (ms) with its database and fiducial, matched as
    :func:`score_against_cardiologists` matches: for plotting the error distributions."""
    frames = []
    for db, truth, pred, fs, fids in _by_database(ecgs, predictions):
        errors: dict = {}
        score_delineation(pred, truth, fs, tolerance_ms, fiducials=fids, errors=errors)
        frames += [pd.DataFrame({"database": db, "fiducial": fid, "error_ms": e}) for fid, e in errors.items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["database", "fiducial", "error_ms"])


# --------------------------------------------------------------------------------------------
# Beside neurokit2 and the published delineators
# --------------------------------------------------------------------------------------------

#: How a method's row is named in the tables.
OURS, PREVIOUS, NEUROKIT = "ours (cross-validated)", "ours before (synthetic only)", "neurokit2 dwt"


def neurokit_cached(ecgs: list[AnnotatedECG], method: str = "dwt", n_jobs: int = 1,
                    progress: bool = False) -> list[pd.DataFrame]:
    """:func:`neurokit_on`, cached on disk by the ECGs' fingerprint (slow: about a second per
    lead-minute); ``n_jobs`` processes share the ECGs."""
    from ...cache import build_or_load
    from ...data.delineation import fingerprint

    def build(folder):
        if n_jobs > 1:
            from joblib import Parallel, delayed

            parts = Parallel(n_jobs=n_jobs)(delayed(neurokit_on)(ecgs[i::n_jobs], method)
                                            for i in range(n_jobs))
            out = [None] * len(ecgs)
            for i, part in enumerate(parts):
                out[i::n_jobs] = part
        else:
            out = neurokit_on(ecgs, method, progress)
        frames = [f.assign(ecg=i) for i, f in enumerate(out) if f is not None]
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["ecg"])
        table.to_csv(folder / "fiducials.csv.gz", index=False)

    def load(folder):
        table = pd.read_csv(folder / "fiducials.csv.gz", dtype={"lead": str})
        groups = {int(k): g.drop(columns="ecg").reset_index(drop=True) for k, g in table.groupby("ecg")}
        return [groups.get(i) for i in range(len(ecgs))]

    out, k, built = build_or_load("neurokit_delineation", {"data": fingerprint(ecgs), "method": method},
                                  build, load)
    print(f"neurokit2 {method} on {len(ecgs)} annotated ECGs: {'computed and cached' if built else 'from cache'} "
          f"(key {k})", flush=True)
    return out


def published_scores() -> pd.DataFrame:
    """The published delineators' LUDB scores (one table of published numbers,
    ``paper == "delineation"``): rows (method, source), columns (fiducial, statistic)."""
    from ...results import paper_numbers

    rows = paper_numbers("delineation", "ludb")
    table = rows.pivot_table(index="configuration", columns="metric", values="value", aggfunc="first")
    table.attrs["sources"] = dict(zip(rows["configuration"], rows["source"]))
    return table


def cse_tolerances() -> pd.Series:
    """The CSE committee's tolerances for the SD of a delineator's errors (ms), by fiducial."""
    from ...results import paper_numbers

    rows = paper_numbers("delineation", "cse")
    out = pd.Series(rows["value"].to_numpy(float), index=rows["metric"].str.replace(" sd", "", regex=False))
    out.attrs["source"] = rows["source"].iloc[0] if len(rows) else ""
    return out


def cardiologist_table(scores: dict[str, pd.DataFrame], database: str) -> pd.DataFrame:
    """Methods (rows) by fiducial (columns) for one database, as the field reports them: a
    ``Se / PPV`` row and a ``mean ± SD (ms)`` row per method; ours and neurokit2 from ``scores``
    (:func:`score_against_cardiologists` frames by method name), on LUDB the published rows and the
    CSE tolerance for the SD beside them. Cells are text; NaN where a method reports nothing."""
    def cell_rates(se, ppv):
        return np.nan if pd.isna(se) else f"{se:.3f} / {ppv:.3f}"

    def cell_error(mean, sd):
        return np.nan if pd.isna(mean) else f"{mean:+.1f} ± {sd:.1f}"

    fids = [f for f in FIDUCIALS if f not in NOT_MARKED.get(database, ())]
    rows = {}
    for name, frame in scores.items():
        part = frame.xs(database, level="database") if database in frame.index.get_level_values(0) else None
        if part is None:
            continue
        rows[(name, "Se / PPV")] = [cell_rates(part.loc[f, "sensitivity"], part.loc[f, "ppv"])
                                    if f in part.index else np.nan for f in fids]
        rows[(name, "mean ± SD (ms)")] = [cell_error(part.loc[f, "mean_error_ms"], part.loc[f, "sd_error_ms"])
                                          if f in part.index else np.nan for f in fids]
    if database == "ludb":
        pub = published_scores()
        for name in pub.index:
            get = lambda f, s: pub.loc[name].get(f"{f} {s}", np.nan)  # noqa: E731
            if any(pd.notna(get(f, "Se")) for f in fids):
                rows[(name, "Se / PPV")] = [cell_rates(get(f, "Se"), get(f, "PPV")) for f in fids]
            rows[(name, "mean ± SD (ms)")] = [cell_error(get(f, "mean"), get(f, "sd")) for f in fids]
        cse = cse_tolerances()
        rows[("CSE tolerance", "SD (ms)")] = [f"{cse[f]:.1f}" if f in cse.index else np.nan for f in fids]
    out = pd.DataFrame.from_dict(rows, orient="index", columns=fids)
    out.index = pd.MultiIndex.from_tuples(out.index, names=["method", "statistic"])
    return out


def goal_check(scores: pd.DataFrame, database: str = "ludb",
               reference: str = "Moskalenko et al. 2019 (U-Net)") -> pd.DataFrame:
    """Per fiducial: ours against the issue's goal on ``database`` (at least the best published
    U-Net's Se and PPV, |mean| ≤ 5 ms, SD no worse than its SD): each criterion met or not."""
    pub = published_scores().loc[reference]
    part = scores.xs(database, level="database")
    rows = []
    for f in part.index:
        se, ppv, sd = (pub.get(f"{f} {s}", np.nan) for s in ("Se", "PPV", "sd"))
        rows.append({"fiducial": f, "Se": part.loc[f, "sensitivity"], "Se goal": se,
                     "PPV": part.loc[f, "ppv"], "PPV goal": ppv,
                     "mean (ms)": part.loc[f, "mean_error_ms"], "SD (ms)": part.loc[f, "sd_error_ms"],
                     "SD goal": sd,
                     "met": bool(part.loc[f, "sensitivity"] >= se and part.loc[f, "ppv"] >= ppv
                                 and abs(part.loc[f, "mean_error_ms"]) <= 5.0
                                 and part.loc[f, "sd_error_ms"] <= sd)})
    return pd.DataFrame(rows).set_index("fiducial")


def strip_example(ecg: AnnotatedECG, lead: str, predictions: dict, title: str = "") -> dict:
    """One lead of an annotated ECG with the cardiologist's labels and each method's delineation
    as per-sample bands, for :func:`ecgkit.plots.delineation_strips`. ``predictions``: method →
    the ECG's fiducials frame (leads named as in the ECG)."""
    from .labels import fiducials_to_mask

    j = [str(x) for x in ecg.leads].index(str(lead))
    bands = {"cardiologist": ecg.labels[:, j]}
    for name, frame in predictions.items():
        rows = (frame[frame["lead"].astype(str) == str(lead)].copy()
                if frame is not None and "lead" in frame and len(frame) else None)
        if rows is not None:         # a wave missing a bound is not drawn (it would fill to the edge)
            for w in ("p", "qrs", "t"):
                if f"{w}_on" in rows and f"{w}_off" in rows:
                    bad = (rows[f"{w}_on"] < 0) | (rows[f"{w}_off"] < 0)
                    rows.loc[bad, [f"{w}_on", f"{w}_off"]] = -1
            if "t_peak" in rows:
                rows["t_peak"] = np.where(rows["t_on"] < 0, -1, rows["t_peak"])
        bands[name] = (fiducials_to_mask(rows, ecg.signal.shape[0], leads=[str(lead)])[0]
                       if rows is not None and len(rows) else np.zeros(ecg.signal.shape[0], np.int8))
    return {"signal": ecg.signal[:, j], "bands": bands,
            "title": title or f"{ecg.database.upper()} {ecg.record}, lead {lead}"}
