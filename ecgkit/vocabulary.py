"""The shared vocabulary: lead names, diagnostic superclasses, sex coding, lab reference ranges.

Every module takes these from here (one definition each). This module imports nothing of ecgkit.
"""
from __future__ import annotations

import math

__all__ = ["LEADS", "SUPERCLASSES", "SEX_CODES", "sex_code", "LAB_RANGES", "LAB_UNITS", "LAB_REFERENCE"]

#: the 12 standard leads, in the order every signal array uses
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

#: PTB-XL's diagnostic superclasses (the labels ALFRED predicts), in the paper's order
SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")

#: sex coding (PTB-XL's): 0 male, 1 female; NaN unknown
SEX_CODES = {"male": 0.0, "m": 0.0, "man": 0.0, "0": 0.0, "0.0": 0.0,
             "female": 1.0, "f": 1.0, "woman": 1.0, "1": 1.0, "1.0": 1.0}
_UNKNOWN_SEX = {"", "nan", "none", "unknown", "u", "?", "na", "n/a"}


def sex_code(value, errors: str = "raise") -> float:
    """0.0 (male), 1.0 (female) or NaN (unknown: None, NaN, "", "Unknown") from the spellings
    datasets use ("Male"/"Female", "M"/"F", 0/1); anything else raises a ``ValueError`` naming it
    (``errors="nan"``: gives NaN instead)."""
    if value is None or type(value).__name__ == "NAType":  # None, pandas.NA
        return math.nan
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _UNKNOWN_SEX:
            return math.nan
        if text in SEX_CODES:
            return SEX_CODES[text]
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
        if number is not None:
            if math.isnan(number):
                return math.nan
            if number in (0.0, 1.0):
                return number
    if errors == "nan":
        return math.nan
    raise ValueError(f"sex {value!r} not understood: expected male/female, M/F or 0 (male)/1 (female)")


_NAN = math.nan

#: lab -> (unit, low, high, source) of adult reference intervals in SI units; NaN: no limit on that
#: side. Troponin has no lower limit (0 ng/L is the assay's floor, and a low troponin is never
#: abnormal: only values above the 99th percentile are) and SpO2 no upper one (100 % is the ceiling
#: of the measurement and a high saturation is not a disorder); an earlier copy in the generator
#: wrote (0, 14) and (94, 100), limits that can never be crossed and so flag nothing.
LAB_RANGES = {
    "potassium": ("mmol/L", 3.5, 5.1, "Tietz Clinical Guide to Laboratory Tests (4th ed.), adult serum"),
    "calcium": ("mmol/L (total)", 2.15, 2.55,
                "Tietz Clinical Guide to Laboratory Tests (4th ed.), adult serum total calcium"),
    "magnesium": ("mmol/L", 0.70, 1.05, "Tietz Clinical Guide to Laboratory Tests (4th ed.), adult serum"),
    "troponin": ("ng/L", _NAN, 14.0, "99th-percentile upper reference limit of hs-cTnT (Elecsys); Fourth "
                 "Universal Definition of MI (Thygesen et al. 2018)"),
    "nt_probnp": ("pg/mL", _NAN, 125.0, "ESC 2021 heart-failure guideline, non-acute rule-out threshold "
                  "(McDonagh et al. 2021)"),
    "creatinine": ("µmol/L", 55.0, 110.0, "adult serum reference interval (enzymatic, both sexes pooled; Tietz)"),
    "haemoglobin": ("g/L", 120.0, 175.0, "WHO anaemia threshold 120 g/L (non-pregnant women; men 130); "
                    "upper limit Tietz"),
    "heart_rate": ("beats/min", 60.0, 100.0, "AHA/ACCF/HRS ECG recommendations: sinus bradycardia < 60, "
                   "tachycardia > 100 (Surawicz et al. 2009)"),
    "sbp": ("mmHg", 90.0, 140.0, "ESC/ESH 2018 hypertension guideline (≥ 140 hypertensive); hypotension < 90"),
    "dbp": ("mmHg", 60.0, 90.0, "ESC/ESH 2018 hypertension guideline (≥ 90 hypertensive); hypotension < 60"),
    "spo2": ("%", 94.0, _NAN, "BTS 2017 emergency oxygen guideline: target 94–98 % (no upper abnormality)"),
}
#: lab -> unit (the columns of the synthetic cohort's ``labs.csv``, in this order)
LAB_UNITS = {lab: unit for lab, (unit, *_rest) in LAB_RANGES.items()}
#: lab -> (low, high), NaN where there is no limit
LAB_REFERENCE = {lab: (low, high) for lab, (_unit, low, high, _source) in LAB_RANGES.items()}
