"""Reference ranges, written down, and the low / normal / high labelling that follows them.

:data:`REFERENCE_RANGES` is the one table every abnormality label in chapter 09 comes from: one row
per laboratory value or vital sign with its unit, lower and upper limit and the source of the
limits. A limit that is NaN does not exist (troponin and NT-proBNP have no lower limit worth
flagging). The rule, at both sides of every threshold:

* ``value < low``  → ``"low"``;
* ``value > high`` → ``"high"``;
* ``low <= value <= high`` → ``"normal"`` (the limits themselves are normal);
* a missing value (NaN) → no label (``None`` / NaN), never "normal".

The lab-abnormality heads predict binary flags (:func:`abnormality_flags`): one column
``<lab>_low`` or ``<lab>_high`` per direction that :data:`FLAGS` lists, 1.0 when the value is
beyond that limit, 0.0 when it is not, NaN when it was not measured (the loss masks those).

The limits are adult reference intervals in SI units, defined once in
:data:`ecgkit.vocabulary.LAB_RANGES` (the synthetic cohort's generator uses the same table). MIMIC-IV values are converted to
these units by :mod:`ecgkit.clinical.mimic` before they are labelled.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..vocabulary import LAB_RANGES

__all__ = ["REFERENCE_RANGES", "FLAGS", "FLAG_NAMES", "reference_table", "lab_status",
           "status_table", "abnormality_flags"]

#: lab, unit, low, high, source (NaN: no limit on that side): :data:`ecgkit.vocabulary.LAB_RANGES`.
REFERENCE_RANGES = pd.DataFrame(
    [(lab, *row) for lab, row in LAB_RANGES.items()], columns=["lab", "unit", "low", "high", "source"],
).set_index("lab")

#: The abnormality flags the heads predict: (lab, direction); each needs the limit on its side.
FLAGS = (
    ("potassium", "high"), ("potassium", "low"), ("calcium", "high"), ("calcium", "low"),
    ("magnesium", "low"), ("troponin", "high"), ("nt_probnp", "high"), ("creatinine", "high"),
    ("haemoglobin", "low"), ("heart_rate", "high"), ("heart_rate", "low"), ("sbp", "high"),
    ("spo2", "low"),
)

#: How a clinician names each flag.
FLAG_NAMES = {
    "potassium_high": "hyperkalaemia", "potassium_low": "hypokalaemia",
    "calcium_high": "hypercalcaemia", "calcium_low": "hypocalcaemia",
    "magnesium_low": "hypomagnesaemia", "troponin_high": "troponin elevated",
    "nt_probnp_high": "NT-proBNP elevated", "creatinine_high": "creatinine elevated (renal impairment)",
    "haemoglobin_low": "anaemia", "heart_rate_high": "tachycardia", "heart_rate_low": "bradycardia",
    "sbp_high": "systolic hypertension", "spo2_low": "hypoxaemia",
}


def reference_table() -> pd.DataFrame:
    """:data:`REFERENCE_RANGES` with the thresholds spelled out (for the book)."""
    out = REFERENCE_RANGES.copy()

    def rule(row):
        parts = []
        if np.isfinite(row["low"]):
            parts.append(f"low < {row['low']:g}")
        if np.isfinite(row["high"]):
            parts.append(f"high > {row['high']:g}")
        return "; ".join(parts)

    out["rule"] = out.apply(rule, axis=1)
    return out[["unit", "low", "high", "rule", "source"]]


def _limits(lab: str, ranges: pd.DataFrame) -> tuple[float, float]:
    if lab not in ranges.index:
        raise KeyError(f"no reference range for {lab!r}; written ranges exist for {list(ranges.index)}")
    return float(ranges.at[lab, "low"]), float(ranges.at[lab, "high"])


def lab_status(values, lab: str, ranges: pd.DataFrame = REFERENCE_RANGES) -> np.ndarray:
    """``"low"``, ``"normal"``, ``"high"`` or ``None`` (not measured) for each value of ``lab``."""
    low, high = _limits(lab, ranges)
    v = np.asarray(pd.to_numeric(pd.Series(np.ravel(values)), errors="coerce"), dtype=float)
    out = np.full(v.shape, None, dtype=object)
    seen = np.isfinite(v)
    out[seen] = "normal"
    if np.isfinite(low):
        out[seen & (v < low)] = "low"
    if np.isfinite(high):
        out[seen & (v > high)] = "high"
    return out


def status_table(values: pd.DataFrame, ranges: pd.DataFrame = REFERENCE_RANGES) -> pd.DataFrame:
    """:func:`lab_status` for every column of ``values`` that has a written range (object
    columns: "low"/"normal"/"high", ``None`` where the value is missing, under pandas 2 and 3)."""
    cols = [c for c in values.columns if c in ranges.index]
    return pd.DataFrame({c: lab_status(values[c].to_numpy(), c, ranges) for c in cols},
                        index=values.index, dtype=object)


def abnormality_flags(values: pd.DataFrame, flags=FLAGS,
                      ranges: pd.DataFrame = REFERENCE_RANGES) -> pd.DataFrame:
    """One float column ``<lab>_<direction>`` per flag: 1.0 beyond the limit, 0.0 within, NaN
    when the value is missing (or its column absent: e.g. PTB-XL has no labs)."""
    out = {}
    for lab, direction in flags:
        low, high = _limits(lab, ranges)
        if direction not in ("low", "high") or not np.isfinite(low if direction == "low" else high):
            raise ValueError(f"flag {lab}_{direction}: the written range has no {direction} limit")
        if lab not in values.columns:
            out[f"{lab}_{direction}"] = np.full(len(values), np.nan)
            continue
        status = lab_status(values[lab].to_numpy(), lab, ranges)
        flag = np.where(status == direction, 1.0, 0.0)
        flag[status == None] = np.nan   # noqa: E711 (object array: element-wise None test)
        out[f"{lab}_{direction}"] = flag
    return pd.DataFrame(out, index=values.index)
