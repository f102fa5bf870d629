"""MIMIC-IV laboratory events joined to MIMIC-IV-ECG records, by subject and a time window.

Native files (PhysioNet layout, ``.csv`` or ``.csv.gz``):

* ``hosp/labevents``: ``labevent_id, subject_id, hadm_id, specimen_id, itemid, charttime,
  storetime, value, valuenum, valueuom, ref_range_lower, ref_range_upper, flag, priority,
  comments``;
* ``hosp/d_labitems``: ``itemid, label, fluid, category``;
* ``hosp/patients`` (optional): ``subject_id, gender, anchor_age, anchor_year, ...`` for age and sex;
* MIMIC-IV-ECG ``record_list.csv``: ``subject_id, study_id, file_name, ecg_time, path``
  (read by :func:`ecgkit.data.mimic_ecg.read_mimic_tables`).

The join, for every ECG and every lab of :data:`MIMIC_LAB_ITEMS`: among that subject's events of
the lab whose ``charttime`` lies within ``window_hours`` of ``ecg_time`` (both edges included:
a value exactly 24 h away counts, one a second later does not), take the nearest one
(``direction="nearest"``, a tie goes to the earlier value), or the latest one before the ECG
(``"before"``: nothing the ECG could not have known) or the first one after (``"after"``). Other
subjects' events never match. Values are converted to the units of
:data:`ecgkit.clinical.labs.REFERENCE_RANGES` from ``valueuom``; events without a numeric value or
with a unit that has no conversion are dropped and counted in ``problems``.

``labevents`` is large (over 100 million rows): it is read in chunks, keeping only the wanted
items (and subjects).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..vocabulary import sex_code
from .records import ClinicalRecords

__all__ = ["MIMIC_LAB_ITEMS", "LABEVENTS_COLUMNS", "D_LABITEMS_COLUMNS", "find_table",
           "read_d_labitems", "lab_itemids", "read_labevents", "to_reference_units",
           "join_labs", "read_patients", "mimic_clinical_records"]

LABEVENTS_COLUMNS = ("labevent_id", "subject_id", "hadm_id", "specimen_id", "itemid", "charttime",
                     "storetime", "value", "valuenum", "valueuom", "ref_range_lower",
                     "ref_range_upper", "flag", "priority", "comments")
D_LABITEMS_COLUMNS = ("itemid", "label", "fluid", "category")

#: our lab -> (d_labitems labels, matched case-insensitively; fluid; {valueuom (lower case): factor
#: to the reference unit}). MIMIC-IV reports calcium, magnesium and creatinine in mg/dL,
#: haemoglobin in g/dL and troponin T in ng/mL.
MIMIC_LAB_ITEMS = {
    "potassium": (("potassium", "potassium, whole blood"), "blood", {"meq/l": 1.0, "mmol/l": 1.0}),
    "calcium": (("calcium, total",), "blood", {"mg/dl": 0.2495, "mmol/l": 1.0}),
    "magnesium": (("magnesium",), "blood", {"mg/dl": 0.4114, "mmol/l": 1.0}),
    "troponin": (("troponin t",), "blood", {"ng/ml": 1000.0, "ng/l": 1.0}),
    "nt_probnp": (("ntprobnp",), "blood", {"pg/ml": 1.0}),
    "creatinine": (("creatinine",), "blood", {"mg/dl": 88.42, "umol/l": 1.0, "µmol/l": 1.0}),
    "haemoglobin": (("hemoglobin",), "blood", {"g/dl": 10.0, "g/l": 1.0}),
}
DIRECTIONS = {"nearest": "nearest", "before": "backward", "after": "forward"}


def find_table(folder: str | os.PathLike, name: str) -> Path:
    """``folder/name.csv.gz`` or ``folder/name.csv``; a clear error when neither exists."""
    folder = Path(folder)
    for suffix in (".csv.gz", ".csv"):
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    raise FileNotFoundError(f"{folder} has no {name}.csv.gz or {name}.csv "
                            f"(pass the MIMIC-IV 'hosp' folder)")


def _check_columns(frame: pd.DataFrame, need, path: Path) -> None:
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing} (has {list(frame.columns)})")


def read_d_labitems(hosp_dir: str | os.PathLike) -> pd.DataFrame:
    path = find_table(hosp_dir, "d_labitems")
    table = pd.read_csv(path)
    _check_columns(table, D_LABITEMS_COLUMNS, path)
    return table


def lab_itemids(d_labitems: pd.DataFrame, items: dict = MIMIC_LAB_ITEMS) -> pd.Series:
    """``itemid -> lab`` for the items whose label and fluid match :data:`MIMIC_LAB_ITEMS`."""
    label = d_labitems["label"].astype(str).str.strip().str.lower()
    fluid = d_labitems["fluid"].astype(str).str.strip().str.lower()
    out = {}
    for lab, (labels, want_fluid, _) in items.items():
        hit = label.isin([x.lower() for x in labels]) & (fluid == want_fluid)
        for itemid in d_labitems.loc[hit, "itemid"]:
            out[int(itemid)] = lab
    return pd.Series(out, name="lab", dtype=object).rename_axis("itemid")


def read_labevents(hosp_dir: str | os.PathLike, itemids, subject_ids=None,
                   chunksize: int = 2_000_000, progress: bool = True) -> pd.DataFrame:
    """The events of ``itemids`` (and ``subject_ids``), columns ``labevent_id, subject_id,
    itemid, charttime, valuenum, valueuom``, read in chunks."""
    path = find_table(hosp_dir, "labevents")
    usecols = ["labevent_id", "subject_id", "itemid", "charttime", "valuenum", "valueuom"]
    header = pd.read_csv(path, nrows=0)
    _check_columns(header, usecols, path)
    itemids = set(int(i) for i in itemids)
    subjects = None if subject_ids is None else set(int(s) for s in subject_ids)
    parts = []
    reader = pd.read_csv(path, usecols=usecols, chunksize=chunksize,
                         dtype={"valueuom": "string", "charttime": "string"})
    for chunk in tqdm(reader, desc=f"reading {path.name}", unit="chunk", disable=not progress):
        keep = chunk["itemid"].isin(itemids)
        if subjects is not None:
            keep &= chunk["subject_id"].isin(subjects)
        parts.append(chunk[keep])
    events = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=usecols)
    events["charttime"] = pd.to_datetime(events["charttime"], format="ISO8601", errors="coerce")
    return events


def to_reference_units(events: pd.DataFrame, itemid_lab: pd.Series, items: dict = MIMIC_LAB_ITEMS,
                       problems: dict | None = None) -> pd.DataFrame:
    """``subject_id, labevent_id, lab, charttime, value`` in reference units; events without
    ``valuenum`` or ``charttime``, or with a unit that has no conversion, dropped and counted."""
    problems = {} if problems is None else problems
    ev = events.copy()
    ev["lab"] = ev["itemid"].map(itemid_lab)
    ev = ev[ev["lab"].notna()]
    ev["valuenum"] = pd.to_numeric(ev["valuenum"], errors="coerce")
    for what, bad in (("no numeric value", ev["valuenum"].isna()), ("no charttime", ev["charttime"].isna())):
        if bad.any():
            problems[f"labevents: {what}"] = problems.get(f"labevents: {what}", 0) + int(bad.sum())
    ev = ev[ev["valuenum"].notna() & ev["charttime"].notna()]
    unit = ev["valueuom"].astype("string").str.strip().str.lower().fillna("")
    factor = pd.Series(np.nan, index=ev.index)
    for lab, (_, _, conversions) in items.items():
        rows = ev["lab"] == lab
        factor[rows] = unit[rows].map(conversions).astype(float)
    unknown = factor.isna()
    if unknown.any():
        for (lab, u), n in pd.DataFrame({"lab": ev["lab"][unknown], "u": unit[unknown]}).value_counts().items():
            problems[f"labevents: {lab} in unit {u!r} (no conversion)"] = int(n)
    ev = ev[~unknown]
    ev["value"] = ev["valuenum"] * factor[~unknown]
    return ev[["subject_id", "labevent_id", "lab", "charttime", "value"]].reset_index(drop=True)


def join_labs(ecgs: pd.DataFrame, labs: pd.DataFrame, window_hours: float = 24.0,
              direction: str = "nearest", hours: bool = False) -> pd.DataFrame:
    """One row per ECG (``ecgs``: index = study_id, columns ``subject_id, ecg_time``), one column
    per lab: the value in the window (NaN when none). ``hours=True`` adds ``<lab>_hours``, the
    signed time from ECG to the lab draw (negative = before)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {sorted(DIRECTIONS)}, not {direction!r}")
    if window_hours < 0:
        raise ValueError("window_hours must be >= 0")
    tol = pd.Timedelta(hours=window_hours)
    left = pd.DataFrame({"study_id": ecgs.index, "subject_id": ecgs["subject_id"].astype("int64").to_numpy(),
                         "ecg_time": pd.to_datetime(ecgs["ecg_time"], format="ISO8601", errors="coerce").to_numpy()})
    out = pd.DataFrame(index=ecgs.index)
    timed = left[left["ecg_time"].notna()].sort_values("ecg_time")
    for lab in labs["lab"].unique() if len(labs) else []:
        right = labs[labs["lab"] == lab][["subject_id", "charttime", "value", "labevent_id"]]
        right = right.assign(subject_id=right["subject_id"].astype("int64"), lab_time=right["charttime"])
        right = right.sort_values(["charttime", "labevent_id"])
        found = {}
        for d in (("backward", "forward") if direction == "nearest" else (DIRECTIONS[direction],)):
            found[d] = pd.merge_asof(timed, right, left_on="ecg_time", right_on="charttime",
                                     by="subject_id", direction=d, tolerance=tol).set_index("study_id")
        if direction == "nearest":
            back, fwd = found["backward"], found["forward"]
            gap_b = (back["ecg_time"] - back["lab_time"]).abs()
            gap_f = (fwd["lab_time"] - fwd["ecg_time"]).abs()
            use_f = fwd["lab_time"].notna() & (back["lab_time"].isna() | (gap_f < gap_b))
            chosen = back.copy()
            chosen.loc[use_f, ["value", "lab_time"]] = fwd.loc[use_f, ["value", "lab_time"]]
        else:
            chosen = next(iter(found.values()))
        out[lab] = chosen["value"].reindex(ecgs.index).astype(float)
        if hours:
            delta = (chosen["lab_time"] - chosen["ecg_time"]).dt.total_seconds() / 3600.0
            out[f"{lab}_hours"] = delta.reindex(ecgs.index).astype(float)
    return out


def read_patients(hosp_dir: str | os.PathLike) -> pd.DataFrame | None:
    """``hosp/patients`` (subject_id, gender, anchor_age, anchor_year) or None when absent."""
    try:
        path = find_table(hosp_dir, "patients")
    except FileNotFoundError:
        return None
    table = pd.read_csv(path)
    _check_columns(table, ("subject_id", "gender", "anchor_age", "anchor_year"), path)
    return table.drop_duplicates("subject_id").set_index("subject_id")


def mimic_clinical_records(ecg_dir: str | os.PathLike, hosp_dir: str | os.PathLike,
                           window_hours: float = 24.0, direction: str = "nearest",
                           study_ids=None, items: dict = MIMIC_LAB_ITEMS,
                           progress: bool = True) -> ClinicalRecords:
    """Labs (and, with ``hosp/patients``, age and sex) for the MIMIC-IV-ECG records in ``ecg_dir``,
    indexed by ``study_id`` in ``record_list.csv`` order (or ``study_ids`` order)."""
    from ..data.mimic_ecg import read_mimic_tables

    problems: dict = {}
    meta = read_mimic_tables(ecg_dir, study_ids=study_ids)
    if "ecg_time" not in meta.columns:
        raise ValueError(f"{ecg_dir}/record_list.csv has no ecg_time column: labs cannot be matched in time")
    no_time = int(meta["ecg_time"].isna().sum())
    if no_time:
        problems["record_list: ECGs without ecg_time (no labs matched)"] = no_time
    itemid_lab = lab_itemids(read_d_labitems(hosp_dir), items)
    absent = sorted(set(items) - set(itemid_lab))
    if absent:
        problems[f"d_labitems: no item for {absent}"] = len(absent)
    events = read_labevents(hosp_dir, itemid_lab.index, subject_ids=meta["subject_id"].unique(),
                            progress=progress)
    labs = to_reference_units(events, itemid_lab, items, problems)
    joined = join_labs(meta[["subject_id", "ecg_time"]], labs, window_hours, direction)
    values = joined.reindex(columns=list(items)).astype(float)
    kinds = {c: "lab" for c in items}
    patients = read_patients(hosp_dir)
    if patients is not None:
        p = patients.reindex(meta["subject_id"].to_numpy())
        year = pd.to_datetime(meta["ecg_time"]).dt.year.to_numpy()
        values["age"] = (p["anchor_age"].to_numpy(dtype=float) + (year - p["anchor_year"].to_numpy(dtype=float)))
        values["sex"] = np.array([sex_code(g, errors="nan") for g in p["gender"]], dtype=float)
        kinds.update({"age": "biometric", "sex": "biometric"})
    values.index.name = "study_id"
    source = (f"MIMIC-IV-ECG {Path(ecg_dir).name} + MIMIC-IV labevents ({window_hours:g} h window, "
              f"{direction})" + (", age and sex from patients" if patients is not None else ""))
    return ClinicalRecords(values, kinds, source, problems)
