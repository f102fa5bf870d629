"""Every ALFRED rule against PTB-XL's own statements (the cardiologists' labels).

* :data:`STATEMENTS`: for each rule of :mod:`ecgkit.alfred.rules`, the PTB-XL statement(s) it
  corresponds to (a record is positive when *any* of them is present). Most are SCP statements
  of ``scp_statements.csv``; a few come from other columns of ``ptbxl_database.csv`` and are
  named ``meta:...`` (the heart axis and the technicians' signal-quality notes, see
  :func:`statement_table`). :data:`NO_STATEMENT` lists the rules without a counterpart, with the
  reason; together the two cover every rule key (a test checks it).
* :func:`statement_table`: records × statements, 1/0 presence from ``scp_codes`` (a statement
  with likelihood 0 is *present*: PTB-XL gives rhythm and form statements likelihood 0), plus
  the ``meta:`` columns (NaN where PTB-XL says nothing, e.g. the heart axis of most records).
* :func:`validate_rules`: one row per rule: statements, positives, records assessed (rule
  determined and statement known), undetermined count, TP/FP/TN/FN, sensitivity and
  specificity with 95 % Wilson intervals, PPV, and whether the target holds
  (:data:`TARGET_RULES`: sensitivity ≥ 0.85 and specificity ≥ 0.95 where the statement has at
  least :data:`MIN_POSITIVES` positives). Undetermined results (``None``) are left out of that
  rule's rates and counted.
* :func:`measure_with_neurokit`: the same :class:`~ecgkit.alfred.pipeline.Measured` structure
  from NeuroKit2's delineation (``ecg_delineate``, DWT by default) instead of the U-Net, so the
  SAME features and rules run on it as a baseline. Each lead is delineated by NeuroKit2
  (:func:`ecgkit.alfred.delineation.neurokit_fiducials`) and the leads are joined into beats and
  the ``lead == "all"`` consensus rows by :func:`ecgkit.alfred.delineation.align_beats`, anchored
  (by default) on the same QRS anchors as ours (:func:`ecgkit.alfred.beats.qrs_anchors`, itself
  NeuroKit2's ``ecg_peaks`` on a multi-lead QRS-energy signal): the beats are the same on both
  sides and only the wave boundaries differ.
* :func:`validation_table`: ours on all records, ours on the baseline's records and the
  baseline side by side (chapter 02 runs it: NeuroKit2 on a fixed sample of
  :data:`BASELINE_RECORDS` records in the quick profile, :func:`baseline_ids`: every positive
  of the key statements plus a seeded draw; NeuroKit2 delineates about one ECG a second).

Nothing here is fitted: the rules are applied as they are (no record of any fold, fold 10 the
test fold included, changes a threshold).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

__all__ = ["STATEMENTS", "NO_STATEMENT", "TARGET_RULES", "MIN_POSITIVES", "TARGET_SENS",
           "TARGET_SPEC", "BASELINE_RECORDS", "META_STATEMENTS", "mapping_table",
           "statement_table", "rule_results", "wilson", "validate_rules",
           "neurokit_delineate", "median_consensus", "measure_with_neurokit", "ENRICH_RULES", "baseline_ids", "validation_table", "rules_moved",
           "RHYTHM_CHECKS", "rhythm_checks"]

#: Rule key → the PTB-XL statements it corresponds to (positive when any one is present).
STATEMENTS: dict[str, tuple[str, ...]] = {
    # rhythm (PTB-XL's rhythm statements are exclusive: SR means sinus rhythm 60-100 bpm)
    "sinus_rhythm": ("SR",),
    "sinus_bradycardia": ("SBRAD",),
    "sinus_tachycardia": ("STACH",),
    "sinus_arrhythmia": ("SARRH",),
    "atrial_fibrillation": ("AFIB",),
    "atrial_flutter": ("AFLT",),
    "irregular_rhythm": ("SVARR",),                     # supraventricular arrhythmia
    "supraventricular_tachycardia": ("SVTAC", "PSVT"),
    "premature_complexes": ("PVC", "PAC", "PRC(S)", "BIGU", "TRIGU"),
    "paced_rhythm": ("PACE", "meta:pacemaker"),
    # conduction
    "first_degree_av_block": ("1AVB", "LPR"),           # LPR: prolonged PR interval
    "wpw_pattern": ("WPW",),
    "complete_lbbb": ("CLBBB",),
    "complete_rbbb": ("CRBBB",),
    "incomplete_lbbb": ("ILBBB",),
    "incomplete_rbbb": ("IRBBB",),
    "left_anterior_fascicular_block": ("LAFB",),
    "left_posterior_fascicular_block": ("LPFB",),
    "nonspecific_ivcd": ("IVCD",),
    "long_qt": ("LNGQT",),
    # hypertrophy (VCLVH: "voltage criteria (QRS) for LVH", what both LVH rules measure)
    "lvh_sokolow_lyon": ("LVH", "VCLVH"),
    "lvh_cornell": ("LVH", "VCLVH"),
    "rvh": ("RVH",),
    "left_atrial_enlargement": ("LAO/LAE",),
    "right_atrial_enlargement": ("RAO/RAE",),
    # Q waves: PTB-XL states them as (old) infarctions by territory; QWAVE ("Q waves present")
    # names no territory and is not used
    "q_waves_inferior": ("IMI", "ILMI", "IPMI", "IPLMI"),
    "q_waves_anterior": ("AMI", "ASMI", "ALMI"),
    "q_waves_lateral": ("LMI", "ILMI", "ALMI", "IPLMI"),
    # ST-T: the ST-elevation statement names no territory, each territorial rule is held
    # against it
    "st_elevation_inferior": ("STE_",),
    "st_elevation_anterior": ("STE_",),
    "st_elevation_lateral": ("STE_",),
    "st_depression": ("STD_",),
    "t_wave_inversion": ("INVT",),
    "low_t_waves": ("LOWT",),
    # axis: not an SCP statement; PTB-XL's heart_axis column (ALAD; RAD/ARAD; see
    # META_STATEMENTS), known for a minority of records only
    "left_axis_deviation": ("meta:axis_left",),
    "right_axis_deviation": ("meta:axis_right",),
    # voltage
    "low_qrs_voltage": ("LVOLT",),
    "high_qrs_voltage": ("HVOLT",),
    # signal quality: not SCP statements; the technicians' notes of ptbxl_database.csv
    "noisy_signal": ("meta:static_noise", "meta:burst_noise"),
    "baseline_wander": ("meta:baseline_drift",),
}

#: Rules without a PTB-XL statement, and why.
NO_STATEMENT: dict[str, str] = {
    "short_pr": "no PTB-XL statement (no short-PR statement; LPR is the prolonged PR)",
    "short_qt": "no PTB-XL statement (only LNGQT, long QT)",
    "poor_r_wave_progression": "no PTB-XL statement",
    "suspected_lead_reversal": "no PTB-XL statement (electrodes_problems notes single "
                               "precordial electrodes, not limb-lead reversal)",
    "flat_lead": "no PTB-XL statement",
}

#: ``meta:`` statements from ptbxl_database.csv columns: name → (column, values that are
#: positive, whether an empty cell means "absent" (True) or "not stated" (False, NaN)).
META_STATEMENTS: dict[str, tuple[str, tuple | None, bool]] = {
    # heart_axis is filled for a minority of records (89 of the 500). Its codes follow the
    # German axis types: LAD is the "left type" (+30° to -30°; our axes of PTB-XL's LAD records
    # have a median of -22° on folds 1-9), ALAD the abnormal left axis (< -30°; median -43°),
    # RAD the right type (> +90°, median 94°), ARAD the abnormal right axis. The rules' left
    # axis deviation (< -30°) is ALAD; right axis deviation (> +90°) is RAD or ARAD. MID, LAD,
    # AXL, AXR, SAG are negatives; empty = unknown (left out)
    "meta:axis_left": ("heart_axis", ("ALAD",), False),
    "meta:axis_right": ("heart_axis", ("RAD", "ARAD"), False),
    # technicians' notes (any text = present, empty = absent)
    "meta:static_noise": ("static_noise", None, True),
    "meta:burst_noise": ("burst_noise", None, True),
    "meta:baseline_drift": ("baseline_drift", None, True),
    "meta:electrodes_problems": ("electrodes_problems", None, True),
    "meta:extra_beats": ("extra_beats", None, True),
    "meta:pacemaker": ("pacemaker", None, True),
}

#: Measurement-defined rules held to the target (sensitivity ≥ TARGET_SENS, specificity ≥
#: TARGET_SPEC) where their statements have at least MIN_POSITIVES positives.
TARGET_RULES = ("sinus_rhythm", "sinus_bradycardia", "sinus_tachycardia", "sinus_arrhythmia",
                "atrial_fibrillation", "first_degree_av_block", "wpw_pattern", "complete_lbbb",
                "complete_rbbb", "incomplete_lbbb", "incomplete_rbbb",
                "left_anterior_fascicular_block", "left_posterior_fascicular_block",
                "nonspecific_ivcd", "long_qt", "left_axis_deviation", "right_axis_deviation",
                "low_qrs_voltage", "high_qrs_voltage")
TARGET_SENS, TARGET_SPEC, MIN_POSITIVES = 0.85, 0.95, 5
#: NeuroKit2 baseline sample size per profile (None = all records).
BASELINE_RECORDS = {"quick": 150, "full": None}


def mapping_table() -> pd.DataFrame:
    """The documented mapping, one row per rule: key, name, category, statements (``|``-joined,
    or "no PTB-XL statement"), note, target (held to the target)."""
    from .rules import RULES

    rows = []
    for r in RULES:
        c = r.condition
        st = STATEMENTS.get(r.key)
        rows.append({"key": r.key, "name": c.name, "category": c.category,
                     "statements": "|".join(st) if st else "no PTB-XL statement",
                     "note": NO_STATEMENT.get(r.key, ""), "target": r.key in TARGET_RULES})
    return pd.DataFrame(rows).set_index("key")


# --------------------------------------------------------------------------------------------
# statements
# --------------------------------------------------------------------------------------------

def _codes(value) -> dict:
    from ..data.ptbxl import parse_scp_codes

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {}
    return parse_scp_codes(value)


def _empty_cell(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip() in ("", "nan")


def statement_table(data, codes=None, meta: bool = True) -> pd.DataFrame:
    """Records × statements (float: 1 present, 0 absent, NaN not stated) of a PTB-XL dataset (an
    object with ``.meta``), its metadata frame, or a Series of ``scp_codes`` strings/dicts.

    A statement is present when it is in the record's ``scp_codes``, whatever its likelihood (0
    included). ``codes``: the SCP columns (default: those of the dataset's ``scp`` table when it
    has one, plus every code that occurs). ``meta``: add the :data:`META_STATEMENTS` columns
    when the frame has their columns.
    """
    frame = data.meta if hasattr(data, "meta") else data
    if isinstance(frame, pd.Series):
        scp, frame = frame, None
    else:
        scp = frame["scp_codes"]
    parsed = [_codes(v) for v in scp]
    if codes is None:
        known = list(getattr(getattr(data, "scp", None), "index", []))
        seen = list(dict.fromkeys(k for d in parsed for k in d))
        codes = list(dict.fromkeys(known + seen))
    out = pd.DataFrame(0.0, index=scp.index, columns=list(codes))
    for i, d in enumerate(parsed):
        hit = [k for k in d if k in out.columns]
        if hit:
            out.iloc[i, [out.columns.get_loc(k) for k in hit]] = 1.0
    if meta and frame is not None:
        for name, (col, values, empty_absent) in META_STATEMENTS.items():
            if col not in frame.columns:
                continue
            cells = frame[col].tolist()
            vals = []
            for v in cells:
                if _empty_cell(v):
                    vals.append(0.0 if empty_absent else np.nan)
                else:
                    vals.append(1.0 if values is None or str(v).strip() in values else 0.0)
            out[name] = vals
    return out


def _truth(statements: pd.DataFrame, codes) -> pd.Series:
    """Any of ``codes`` present (1), all absent (0), or NaN where one is unknown and none is
    present. Codes that are not columns count as absent."""
    cols = [c for c in codes if c in statements.columns]
    if not cols:
        return pd.Series(0.0, index=statements.index)
    sub = statements[cols].astype(float)
    pos = (sub == 1).any(axis=1)
    unknown = sub.isna().any(axis=1)
    return pd.Series(np.where(pos, 1.0, np.where(unknown, np.nan, 0.0)), index=statements.index)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------

def rule_results(measured) -> pd.DataFrame:
    """Records × rule keys, object True/False/None, from a Measured's ``rules`` frames."""
    cols = {}
    for rid, frame in zip(measured.ids, measured.rules):
        cols[rid] = frame["positive"]
    out = pd.DataFrame(cols).T.astype(object)
    out.index = pd.Index(list(measured.ids))
    return out.where(out.notna(), None)


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float, float]:
    """Proportion ``k / n`` with its Wilson score interval (NaN, NaN, NaN when ``n`` is 0)."""
    if n <= 0:
        return math.nan, math.nan, math.nan
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return p, max(0.0, centre - half), min(1.0, centre + half)


def _target(key, n_pos, sens, spec) -> str:
    if key not in TARGET_RULES:
        return ""
    if n_pos < MIN_POSITIVES:
        return f"n/a (<{MIN_POSITIVES} pos)"
    ok = (not math.isnan(sens) and sens >= TARGET_SENS and not math.isnan(spec)
          and spec >= TARGET_SPEC)
    return "met" if ok else "not met"


def validate_rules(measured, statements: pd.DataFrame, mapping: dict | None = None,
                   ids=None) -> pd.DataFrame:
    """Sensitivity and specificity of every rule against its statements (see the module doc).

    ``measured``: a :class:`~ecgkit.alfred.pipeline.Measured` (or anything with ``ids`` and
    ``rules``: one :func:`~ecgkit.alfred.rules.evaluate_rules` frame per record);
    ``statements``: records × statements (:func:`statement_table`) indexed like the ids;
    ``mapping``: rule key → statements (default :data:`STATEMENTS`); ``ids``: only these records.

    One row per rule (rules.py order, a rule without statements has NaN rates): name, category,
    statements, n (records), n_pos (records with the statement, undetermined included),
    n_assessed (rule determined and statement known), undetermined, tp, fp, tn, fn, sens,
    sens_low, sens_high, spec, spec_low, spec_high (95 % Wilson), ppv, target.
    """
    from .rules import RULES

    mapping = STATEMENTS if mapping is None else mapping
    res = rule_results(measured)
    if ids is not None:
        res = res.loc[list(ids)]
    missing = [i for i in res.index if i not in statements.index]
    if missing:
        raise KeyError(f"{len(missing)} records have no statements, e.g. {missing[:3]}")
    st = statements.loc[res.index]
    rows = []
    for r in RULES:
        c = r.condition
        codes = mapping.get(r.key)
        pred = res[r.key] if r.key in res.columns else pd.Series(None, index=res.index,
                                                                  dtype=object)
        det = pred.map(lambda v: v is True or v is False).astype(bool)
        row = {"key": r.key, "name": c.name, "category": c.category,
               "statements": "|".join(codes) if codes else "no PTB-XL statement",
               "n": len(res), "undetermined": int((~det).sum()),
               "n_positive_rule": int((pred.map(lambda v: v is True)).sum())}
        if not codes:
            row.update(n_pos=np.nan, n_assessed=int(det.sum()))
            rows.append(row)
            continue
        truth = _truth(st, codes)
        known = truth.notna()
        use = det & known
        t = truth[use].to_numpy(float).astype(bool)
        p = pred[use].map(bool).to_numpy(bool)
        tp, fn = int((t & p).sum()), int((t & ~p).sum())
        tn, fp = int((~t & ~p).sum()), int((~t & p).sum())
        sens, s_lo, s_hi = wilson(tp, tp + fn)
        spec, c_lo, c_hi = wilson(tn, tn + fp)
        n_pos = int((truth == 1).sum())
        row.update(n_pos=n_pos, n_known=int(known.sum()), n_assessed=int(use.sum()),
                   undetermined_pos=int(((truth == 1) & ~det).sum()),
                   tp=tp, fp=fp, tn=tn, fn=fn, sens=sens, sens_low=s_lo, sens_high=s_hi,
                   spec=spec, spec_low=c_lo, spec_high=c_hi,
                   ppv=tp / (tp + fp) if tp + fp else math.nan)
        row["target"] = _target(r.key, n_pos, sens, spec)
        rows.append(row)
    cols = ["key", "name", "category", "statements", "n", "n_known", "n_pos", "n_assessed",
            "undetermined", "undetermined_pos", "n_positive_rule", "tp", "fp", "tn", "fn",
            "sens", "sens_low", "sens_high", "spec", "spec_low", "spec_high", "ppv", "target"]
    out = pd.DataFrame(rows).reindex(columns=cols).set_index("key")
    out["target"] = out["target"].fillna("")
    return out


# --------------------------------------------------------------------------------------------
# NeuroKit2 baseline
# --------------------------------------------------------------------------------------------

def neurokit_delineate(signal, fs: float, method: str = "dwt", anchors: bool = True,
                       consensus: str = "align") -> pd.DataFrame:
    """One record (samples × leads) delineated by NeuroKit2 in our fiducial format, with the
    ``lead == "all"`` consensus rows of :func:`~ecgkit.alfred.delineation.align_beats` (beats
    anchored on :func:`~ecgkit.alfred.beats.qrs_anchors` with ``anchors``, else a vote over the
    leads' QRS complexes). ``consensus="median"``: the ``all`` rows' QRS onset/offset are the
    leads' medians (:func:`median_consensus`). All-NaN leads are skipped. NeuroKit2 sees the
    raw lead, as :func:`~ecgkit.alfred.delineation.neurokit_fiducials` does (its ``ecg_clean``
    first made the QRS boundaries wider still on PTB-XL)."""
    from .beats import qrs_anchors
    from .delineation import LEADS, _empty, align_beats, neurokit_fiducials

    x = np.asarray(signal, dtype=float)
    x = x[:, None] if x.ndim == 1 else x
    names = list(LEADS) if x.shape[1] == len(LEADS) else list(range(x.shape[1]))
    use = np.isfinite(x).any(0)
    frames = []
    for i in np.flatnonzero(use):
        lead = np.nan_to_num(x[:, i])
        f = neurokit_fiducials(lead, fs, method, lead=names[i])
        if len(f):
            frames.append(f)
    if not frames:
        return _empty("neurokit2 delineated no lead")
    per_lead = pd.concat(frames, ignore_index=True)
    anchor = None
    if anchors:
        anchor = qrs_anchors(np.nan_to_num(x[:, use]), fs)
        anchor = anchor if len(anchor) else None
    fid = align_beats(per_lead, x.shape[0], fs, anchors=anchor)
    if fid.empty:
        return _empty("no beat confirmed across leads")
    return median_consensus(fid) if consensus == "median" else fid


def median_consensus(fiducials: pd.DataFrame) -> pd.DataFrame:
    """A copy of an :func:`~ecgkit.alfred.delineation.align_beats` frame whose ``all`` rows
    take the QRS onset and offset as the median over the beat's leads (instead of the
    second-earliest onset and second-latest offset): robust to a delineator whose per-lead QRS
    boundaries scatter widely (NeuroKit2's do, see the validation chapter)."""
    out = fiducials.copy()
    if out.empty:
        return out
    is_all = out["lead"].astype(str) == "all"
    leads = out[~is_all]
    for col in ("qrs_on", "qrs_off"):
        v = leads[leads[col] >= 0].groupby("beat")[col].median()
        rows = out.index[is_all]
        new = out.loc[rows, "beat"].map(v)
        keep = new.notna().to_numpy()
        out.loc[rows[keep], col] = new[keep].astype(np.int64).to_numpy()
    return out


def measure_with_neurokit(signals, fs: float, ages=None, sexes=None, ids=None,
                          method: str = "dwt", anchors: bool = True, progress: bool = True,
                          fiducials: list | None = None, consensus: str = "align", cache: bool = True):
    """:func:`ecgkit.alfred.pipeline.measure_ecgs` with NeuroKit2's delineation
    (:func:`neurokit_delineate`) in place of the U-Net: the same features and rules, the same
    :class:`~ecgkit.alfred.pipeline.Measured`. ``fiducials``: precomputed delineations (one
    frame per record, as ``consensus="align"`` gives them) to skip NeuroKit2; ``consensus``:
    see :func:`neurokit_delineate`. ``cache`` (default, not with ``fiducials``): kept under the
    key of the signals, rate, ages, sexes, method, anchors, consensus and NeuroKit2's version
    (:func:`~ecgkit.alfred.pipeline.cached_measurement`)."""
    from importlib.metadata import version

    from tqdm import tqdm

    from .features import extract_features_many
    from .pipeline import Measured, cached_measurement, measurement_spec
    from .rules import evaluate_rules

    if consensus not in ("align", "median"):
        raise ValueError(f"consensus is 'align' or 'median', not {consensus!r}")
    arr = signals if not isinstance(signals, np.ndarray) or signals.ndim == 3 else [signals]
    n = len(arr)

    def compute():
        delineated = fiducials
        if delineated is None:
            delineated = []
            for k in tqdm(range(n), desc="neurokit2", disable=not progress, mininterval=2.0):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    delineated.append(neurokit_delineate(arr[k], fs, method, anchors))
        if consensus == "median":
            delineated = [median_consensus(f) for f in delineated]
        index = pd.Index(range(n) if ids is None else list(ids))
        features, failed = extract_features_many(arr, fs, delineated, ages=ages, sexes=sexes,
                                                 ids=index, progress=progress)
        rules = [evaluate_rules(row) for _, row in features.iterrows()]
        return Measured(index, float(fs), list(delineated), features, rules, failed)

    if not cache or fiducials is not None:
        return compute()
    delineator = {"neurokit2": version("neurokit2"), "method": method, "anchors": bool(anchors),
                  "consensus": consensus}
    return cached_measurement(measurement_spec(arr, fs, ages, sexes, delineator), compute, ids,
                              f"neurokit2 {method}")


#: Rules whose statements the baseline sample takes every positive of (the key targets; SR is
#: common enough without it).
ENRICH_RULES = ("sinus_bradycardia", "sinus_tachycardia", "atrial_fibrillation",
                "first_degree_av_block", "complete_lbbb", "complete_rbbb", "low_qrs_voltage")


def baseline_ids(ids, statements: pd.DataFrame | None = None, profile: str | None = None,
                 seed: int = 0, n: int | None = None) -> pd.Index:
    """The fixed sample of records the NeuroKit2 baseline runs on (:data:`BASELINE_RECORDS`
    per profile, or ``n``), in the order of ``ids``.

    Without ``statements``: a seeded draw (:func:`ecgkit.alfred.pipeline.sample_ids`). With
    ``statements`` (records × statements): every record positive for a statement of
    :data:`ENRICH_RULES` first (rare statements would otherwise have 1-2 positives among 150
    records), then a seeded draw from the others up to the sample size.
    """
    from ..config import profile as active_profile
    from .pipeline import sample_ids

    ids = pd.Index(ids)
    n = BASELINE_RECORDS[active_profile(profile)] if n is None else n
    if n is None or n >= len(ids):
        return ids
    if statements is None:
        return sample_ids(ids, n, seed=seed)
    st = statements.reindex(ids)
    codes = [c for k in ENRICH_RULES for c in STATEMENTS[k]]
    must = pd.Series(False, index=ids)
    for c in codes:
        if c in st.columns:
            must |= st[c].eq(1).to_numpy()
    chosen = ids[must.to_numpy()]
    if len(chosen) >= n:
        chosen = sample_ids(chosen, n, seed=seed)
    else:
        rest = ids[~must.to_numpy()]
        chosen = chosen.append(sample_ids(rest, n - len(chosen), seed=seed))
    return ids[ids.isin(chosen)]


# --------------------------------------------------------------------------------------------
# side by side
# --------------------------------------------------------------------------------------------

_SIDE = ["n_pos", "n_assessed", "undetermined", "sens", "sens_low", "sens_high", "spec",
         "spec_low", "spec_high", "target"]


def validation_table(ours, baseline, statements: pd.DataFrame, mapping: dict | None = None
                     ) -> pd.DataFrame:
    """Ours on all its records, ours on the baseline's records and the baseline side by side:
    columns (side, metric) with sides ``ours_all``, ``ours_same`` and ``neurokit2``, one row per
    rule, with the rule's name and statements in front. ``baseline``: a Measured, or a dict
    label → Measured (several baselines on the same records; ``ours_same`` uses the first's)."""
    baselines = baseline if isinstance(baseline, dict) else {"neurokit2": baseline}
    first = next(iter(baselines.values()))
    a = validate_rules(ours, statements, mapping)
    sides = [("ours_all", a),
             ("ours_same", validate_rules(ours, statements, mapping, ids=list(first.ids)))]
    sides += [(label, validate_rules(m, statements, mapping)) for label, m in baselines.items()]
    head = a[["name", "category", "statements"]]
    head.columns = pd.MultiIndex.from_product([["rule"], head.columns])
    parts = [head]
    for label, t in sides:
        side = t.reindex(columns=_SIDE)
        side.columns = pd.MultiIndex.from_product([[label], side.columns])
        parts.append(side)
    return pd.concat(parts, axis=1)


def rules_moved(before, after, statements: pd.DataFrame, mapping: dict | None = None,
                min_change: float = 0.03) -> pd.DataFrame:
    """Every rule's sensitivity and specificity against the statements with two delineations of
    the same records (``before``, ``after``: :class:`~ecgkit.alfred.pipeline.Measured`), the
    change, whether it moved (sensitivity or specificity by ``min_change`` or more, or a change in
    the records it fires on among the statement's positives), and why: the medians of the global
    measurements the rule reads, before → after (records both measured)."""
    from .rules import RULES

    common = [i for i in after.ids if i in set(before.ids)]
    a = validate_rules(before, statements, mapping, ids=common)
    b = validate_rules(after, statements, mapping, ids=common)
    fb = before.features.loc[common]
    fa = after.features.loc[common]
    rows = []
    for r in RULES:
        if r.key not in a.index or (pd.isna(a.loc[r.key, "sens"]) and pd.isna(b.loc[r.key, "sens"])):
            continue
        ds = b.loc[r.key, "sens"] - a.loc[r.key, "sens"]
        dc = b.loc[r.key, "spec"] - a.loc[r.key, "spec"]
        moved = bool((abs(ds) >= min_change) if pd.notna(ds) else False) or \
            bool((abs(dc) >= min_change) if pd.notna(dc) else False)
        why = []
        for need in r.needs:
            if need in fb.columns and need in fa.columns and need not in ("age", "sex"):
                x, y = pd.to_numeric(fb[need], errors="coerce"), pd.to_numeric(fa[need], errors="coerce")
                if x.notna().any() and y.notna().any():
                    why.append(f"{need} {x.median():.3g} → {y.median():.3g}")
        rows.append({"rule": a.loc[r.key, "name"], "statements": a.loc[r.key, "statements"],
                     "positives": a.loc[r.key, "n_pos"],
                     "sens before": a.loc[r.key, "sens"], "sens after": b.loc[r.key, "sens"],
                     "spec before": a.loc[r.key, "spec"], "spec after": b.loc[r.key, "spec"],
                     "fires before": a.loc[r.key, "n_positive_rule"],
                     "fires after": b.loc[r.key, "n_positive_rule"],
                     "moved": "moved" if moved else "",
                     "medians before → after": "; ".join(why[:3])})
    return pd.DataFrame(rows).set_index("rule")


#: The rhythm checks of :func:`rhythm_checks`: (rule, who, statements present, statements absent,
#: extra condition on our features or None).
RHYTHM_CHECKS = (
    ("atrial_fibrillation", "AF records", ("AFIB",), (), None),
    ("atrial_fibrillation", "sinus with premature beats or sinus arrhythmia, no AF",
     ("PAC", "PVC", "SARRH"), ("AFIB", "AFLT"), None),
    ("sinus_tachycardia", "sinus tachycardia records", ("STACH",), (), None),
    ("sinus_tachycardia", "sinus tachycardia records, our rate > 100 bpm", ("STACH",), (),
     ("heart_rate", ">", 100.0)),
    ("sinus_bradycardia", "sinus bradycardia records", ("SBRAD",), (), None),
    ("sinus_bradycardia", "sinus bradycardia records, our rate < 60 bpm", ("SBRAD",), (),
     ("heart_rate", "<", 60.0)),
    ("long_qt", "long QT records", ("LNGQT",), (), None),
    ("long_qt", "records without long QT", (), ("LNGQT",), None),
)


def rhythm_checks(measured: dict, statements: pd.DataFrame, ids=None) -> pd.DataFrame:
    """How often the rhythm and QT rules fire where they must and where they must not, for each
    delineation (``measured``: name → :class:`~ecgkit.alfred.pipeline.Measured` of the same
    records): per check of :data:`RHYTHM_CHECKS` the records in the group and, per delineation,
    the share the rule fires on (undetermined counts as not firing). ``ids``: only these records
    (e.g. folds 1–9, where the rules were fitted)."""
    rows = []
    for key, who, present, absent, extra in RHYTHM_CHECKS:
        row = {"rule": key, "records": who}
        for name, m in measured.items():
            res = rule_results(m)
            use = [i for i in res.index if (ids is None or i in set(ids)) and i in statements.index]
            st = statements.loc[use]
            group = pd.Series(True, index=use)
            if present:
                group &= _truth(st, present) == 1
            if absent:
                group &= _truth(st, absent) == 0
            if extra is not None:
                col, op, value = extra
                v = pd.to_numeric(m.features.loc[use, col], errors="coerce")
                group &= (v > value) if op == ">" else (v < value)
            fires = res.loc[group[group].index, key].map(lambda x: x is True) if key in res else pd.Series([], dtype=bool)
            row[f"n, {name}"] = int(group.sum())
            row[f"fires, {name}"] = float(fires.mean()) if len(fires) else np.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index(["rule", "records"])
