"""The clinical record beside each ECG: laboratory values, vitals and biometrics (NaN = not measured).

* **Synthetic cohort** (:func:`ecgkit.data.load_synthetic`): its folder holds ``labs.csv``
  (``ecg_id``, potassium, calcium, magnesium, troponin, nt_probnp, creatinine, haemoglobin,
  heart_rate, sbp, dbp, spo2) whose true values shaped the ECG; biometrics (age, sex, height,
  weight) come from ``dataset.meta``.
* **PTB-XL** (real): biometrics only, many heights and weights missing. There are no labs, so
  the lab-abnormality heads cannot be trained or scored on it.
* **MIMIC-IV**: laboratory events joined to MIMIC-IV-ECG records, see :mod:`ecgkit.clinical.mimic`.

Everything becomes one :class:`ClinicalRecords`: a values table aligned with the ECGs and the kind
of each column. Bad values (text where a number belongs, impossible biometrics) become NaN and are
counted in ``problems``; a record absent from ``labs.csv`` is a row of NaN, also counted.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .labs import REFERENCE_RANGES, abnormality_flags

__all__ = ["LABS", "VITALS", "BIOMETRICS", "ClinicalRecords", "read_labs_csv", "biometrics",
           "clinical_records"]

LABS = ("potassium", "calcium", "magnesium", "troponin", "nt_probnp", "creatinine", "haemoglobin")
VITALS = ("heart_rate", "sbp", "dbp", "spo2")
BIOMETRICS = ("age", "sex", "height", "weight")
#: plausible ranges of the biometrics; outside them a value is treated as not measured
_PLAUSIBLE = {"age": (0.0, 120.0), "sex": (0.0, 1.0), "height": (100.0, 230.0), "weight": (25.0, 300.0)}
_UNITS = {"age": "years", "sex": "0 male, 1 female", "height": "cm", "weight": "kg"}


@dataclass
class ClinicalRecords:
    """Clinical values aligned with a dataset's ECGs (index = record id, same order)."""

    values: pd.DataFrame
    kinds: dict
    source: str
    problems: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def features(self) -> list[str]:
        return list(self.values.columns)

    @property
    def has_labs(self) -> bool:
        """True when some laboratory value or vital sign with a written range was measured."""
        cols = [c for c, k in self.kinds.items() if k in ("lab", "vital") and c in REFERENCE_RANGES.index]
        return bool(cols) and bool(self.values[cols].notna().to_numpy().any())

    def flags(self) -> pd.DataFrame:
        """The lab-abnormality flags (:func:`ecgkit.clinical.labs.abnormality_flags`), NaN where unmeasured."""
        return abnormality_flags(self.values)

    def subset(self, positions) -> "ClinicalRecords":
        return ClinicalRecords(self.values.iloc[positions], self.kinds, self.source, self.problems)

    def summary(self) -> pd.DataFrame:
        """Per column: kind, unit, share measured, median and 5th–95th percentiles."""
        rows = []
        for c in self.values.columns:
            v = self.values[c]
            unit = REFERENCE_RANGES.at[c, "unit"] if c in REFERENCE_RANGES.index else _UNITS.get(c, "")
            seen = v.dropna()
            rows.append({"feature": c, "kind": self.kinds.get(c, ""), "unit": unit,
                         "measured": float(v.notna().mean()) if len(v) else np.nan,
                         "median": seen.median() if len(seen) else np.nan,
                         "p5": seen.quantile(0.05) if len(seen) else np.nan,
                         "p95": seen.quantile(0.95) if len(seen) else np.nan})
        return pd.DataFrame(rows).set_index("feature")


def _numeric(frame: pd.DataFrame, what: str, problems: dict) -> pd.DataFrame:
    out = frame.apply(pd.to_numeric, errors="coerce")
    bad = out.isna() & frame.notna()
    for col in frame.columns[bad.any().to_numpy()]:
        problems[f"{what}: {col} not a number"] = int(bad[col].sum())
    return out.astype(float)


def read_labs_csv(path: str | os.PathLike, ids, columns=LABS + VITALS,
                  problems: dict | None = None) -> pd.DataFrame:
    """``labs.csv`` (``ecg_id`` + value columns) as a float table indexed like ``ids``.

    Columns that are missing from the file come back all-NaN (counted in ``problems``), records
    that have no row are all-NaN (counted), non-numeric entries are NaN (counted)."""
    path = Path(path)
    problems = {} if problems is None else problems
    table = pd.read_csv(path)
    if "ecg_id" not in table.columns:
        raise ValueError(f"{path} has no ecg_id column (columns: {list(table.columns)})")
    dup = table["ecg_id"].duplicated()
    if dup.any():
        problems["labs.csv: duplicate ecg_id rows dropped (first kept)"] = int(dup.sum())
        table = table[~dup]
    table = table.set_index("ecg_id")
    for col in columns:
        if col not in table.columns:
            problems[f"labs.csv: column {col} absent"] = len(ids)
            table[col] = np.nan
    values = _numeric(table[list(columns)], "labs.csv", problems)
    ids = pd.Index(ids)
    absent = int((~ids.isin(values.index)).sum())
    if absent:
        problems["labs.csv: records without a row"] = absent
    return values.reindex(ids)


def biometrics(meta: pd.DataFrame, problems: dict | None = None) -> pd.DataFrame:
    """Age, sex, height, weight from a PTB-XL-style ``meta``; implausible values become NaN.

    PTB-XL writes the age of patients over 89 as 300 (anonymisation): those become 90."""
    problems = {} if problems is None else problems
    cols = {c: (meta[c] if c in meta.columns else pd.Series(np.nan, index=meta.index)) for c in BIOMETRICS}
    out = _numeric(pd.DataFrame(cols, index=meta.index), "biometrics", problems)
    out.loc[out["age"] >= 290, "age"] = 90.0
    for c, (lo, hi) in _PLAUSIBLE.items():
        bad = out[c].notna() & ((out[c] < lo) | (out[c] > hi))
        if bad.any():
            problems[f"biometrics: {c} outside {lo:g}–{hi:g}"] = int(bad.sum())
            out.loc[bad, c] = np.nan
    return out


def clinical_records(dataset, labs_file: str | os.PathLike | None = None) -> ClinicalRecords:
    """The clinical record of every ECG of a PTB-XL-layout ``dataset``.

    With ``labs.csv`` in the dataset's folder (the synthetic cohort) or ``labs_file``: labs,
    vitals and biometrics; otherwise (real PTB-XL) biometrics only."""
    problems: dict = {}
    bio = biometrics(dataset.meta, problems)
    kinds = {c: "biometric" for c in BIOMETRICS}
    path = Path(labs_file) if labs_file else (Path(dataset.path) / "labs.csv" if getattr(dataset, "path", None) else None)
    if path is not None and path.is_file():
        labs = read_labs_csv(path, dataset.meta.index, problems=problems)
        kinds = {**{c: "lab" for c in LABS}, **{c: "vital" for c in VITALS}, **kinds}
        values = pd.concat([labs, bio], axis=1)
        source = f"{dataset.name}: labs, vitals ({path.name}) and biometrics"
    else:
        values = bio
        source = f"{dataset.name}: biometrics only (age, sex, height, weight); no laboratory values"
    values.index.name = dataset.meta.index.name
    return ClinicalRecords(values, kinds, source, problems)
