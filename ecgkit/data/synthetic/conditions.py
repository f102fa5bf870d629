"""The SCP statements the generator uses, which may occur together, and laboratory values."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Condition:
    """A supported SCP-ECG statement: code, PTB-XL classes and how a report words it."""

    code: str
    description: str
    kind: str                # "diagnostic", "form" or "rhythm"
    superclass: str | None   # PTB-XL diagnostic_class (None for form/rhythm statements)
    subclass: str | None     # PTB-XL diagnostic_subclass
    category: str            # PTB-XL "Statement Category"
    form: bool = False       # also a form statement (PTB-XL's form flag)
    report: str = ""


_CD = "Intraventricular and intra-atrial Conduction disturbances"
_RH = "Statements related to impulse formation (abnormalities)"
_OTHER_ST = "other ST-T descriptive statements"

#: The statements the generator uses, by SCP code (PTB-XL's codes and classes).
CONDITIONS: dict[str, Condition] = {c.code: c for c in [
    Condition("NORM", "ECG within normal limits", "diagnostic", "NORM", "NORM", "Normal/abnormal",
              report="Normal ECG"),
    Condition("IMI", "infarction of the inferior wall", "diagnostic", "MI", "IMI",
              "Myocardial Infarction", report="Inferior infarct"),
    Condition("AMI", "infarction of the anterior wall", "diagnostic", "MI", "AMI",
              "Myocardial Infarction", report="Anterior infarct"),
    Condition("ASMI", "infarction of the anterior wall and septum", "diagnostic", "MI", "AMI",
              "Myocardial Infarction", report="Anteroseptal infarct"),
    Condition("LVH", "hypertrophy of the left ventricle", "diagnostic", "HYP", "LVH",
              "Ventricular Hypertrophy", report="Left ventricular hypertrophy"),
    Condition("LAO/LAE", "overload or enlargement of the left atrium", "diagnostic", "HYP",
              "LAO/LAE", "Atrial statements", report="Left atrial enlargement"),
    Condition("CLBBB", "complete block of the left bundle branch", "diagnostic", "CD", "CLBBB", _CD,
              report="Left bundle branch block"),
    Condition("CRBBB", "complete block of the right bundle branch", "diagnostic", "CD", "CRBBB", _CD,
              report="Right bundle branch block"),
    Condition("IRBBB", "incomplete block of the right bundle branch", "diagnostic", "CD", "IRBBB",
              _CD, report="Incomplete right bundle branch block"),
    Condition("LAFB", "block of the anterior fascicle of the left bundle", "diagnostic", "CD",
              "LAFB/LPFB", _CD, report="Left anterior fascicular block"),
    Condition("1AVB", "first-degree atrioventricular block (PR over 200 ms)", "diagnostic", "CD",
              "_AVB", "Sinus node dysfunction, atrial and AV-conduction defects",
              report="1st degree A-V block"),
    Condition("ISC_", "ischaemic ST-T changes without a specific territory", "diagnostic", "STTC",
              "ISC_", "Basic roots for coding ST-T changes and abnormalities",
              report="ST-T changes, consider ischemia"),
    Condition("ISCAL", "ischaemic ST-T changes in the anterolateral leads", "diagnostic", "STTC",
              "ISCA", "ischemic ST-T changes", report="Anterolateral ST-T changes, consider ischemia"),
    Condition("ISCIN", "ischaemic ST-T changes in the inferior leads", "diagnostic", "STTC",
              "ISCI", "ischemic ST-T changes", report="Inferior ST-T changes, consider ischemia"),
    Condition("NDT", "T-wave changes of no diagnostic specificity", "diagnostic", "STTC", "STTC",
              _OTHER_ST, form=True, report="Nonspecific T wave abnormality"),
    Condition("LNGQT", "QT interval longer than normal for the heart rate", "diagnostic", "STTC",
              "STTC", _OTHER_ST, form=True, report="Prolonged QT interval"),
    Condition("EL", "ST-T changes attributed to an electrolyte disturbance or a drug", "diagnostic",
              "STTC", "STTC", "physiopathological nature of ST-T changes",
              report="ST-T changes, consider electrolyte disturbance"),
    Condition("LVOLT", "small QRS complexes (under 0.5 mV in every limb lead)", "form", None, None,
              "Other QRS morphology descriptive statements", form=True,
              report="Low QRS voltages in limb leads"),
    Condition("SR", "normal sinus rhythm", "rhythm", None, None, _RH, report="Sinus rhythm"),
    Condition("SBRAD", "sinus rhythm slower than 60 per minute", "rhythm", None, None, _RH,
              report="Sinus bradycardia"),
    Condition("STACH", "sinus rhythm faster than 100 per minute", "rhythm", None, None, _RH,
              report="Sinus tachycardia"),
    Condition("SARRH", "sinus rhythm with marked respiratory variation of the RR interval",
              "rhythm", None, None, _RH, report="Sinus arrhythmia"),
    Condition("AFIB", "atrial fibrillation: no P waves, fibrillatory baseline, irregular RR",
              "rhythm", None, None, _RH, report="Atrial fibrillation"),
]}

DIAG_ORDER = ("NORM", "1AVB", "CLBBB", "CRBBB", "IRBBB", "LAFB", "LAO/LAE", "LVH", "IMI", "ASMI",
              "AMI", "ISC_", "ISCAL", "ISCIN", "NDT", "EL", "LNGQT")
# Conditions that cannot occur together in one record (one per group).
EXCLUSIVE = (("CLBBB", "CRBBB", "IRBBB"), ("AMI", "ASMI"), ("ISC_", "ISCAL", "ISCIN", "NDT"),
             ("CLBBB", "LAFB"), ("CLBBB", "LVH"), ("CLBBB", "IMI"), ("CLBBB", "AMI"),
             ("CLBBB", "ASMI"), ("CLBBB", "ISC_"), ("CLBBB", "ISCAL"), ("CLBBB", "ISCIN"),
             ("AFIB", "1AVB"), ("AFIB", "LAO/LAE"))


def scp_statements() -> pd.DataFrame:
    """The statements table written as ``scp_statements.csv`` (PTB-XL's columns, code index)."""
    rows = []
    for c in CONDITIONS.values():
        rows.append({
            "description": c.description,
            "diagnostic": 1.0 if c.kind == "diagnostic" else np.nan,
            "form": 1.0 if (c.kind == "form" or c.form) else np.nan,
            "rhythm": 1.0 if c.kind == "rhythm" else np.nan,
            "diagnostic_class": c.superclass,
            "diagnostic_subclass": c.subclass,
            "Statement Category": c.category,
        })
    return pd.DataFrame(rows, index=pd.Index(list(CONDITIONS), name=None))


# Columns of ``labs.csv`` (after ``ecg_id``) and their units: :data:`ecgkit.vocabulary.LAB_UNITS`;
# reference ranges: :data:`ecgkit.vocabulary.LAB_REFERENCE`.
#: Probability that a value is missing from ``labs.csv`` (the ECG still reflects the true value).
LAB_MISSING = {
    "potassium": 0.03, "calcium": 0.06, "magnesium": 0.12, "troponin": 0.15, "nt_probnp": 0.2,
    "creatinine": 0.04, "haemoglobin": 0.04, "heart_rate": 0.01, "sbp": 0.02, "dbp": 0.02,
    "spo2": 0.03,
}
NORMAL_LABS = {"potassium": 4.2, "calcium": 2.36, "magnesium": 0.86, "troponin": 6.0,
               "nt_probnp": 80.0, "creatinine": 80.0, "haemoglobin": 140.0, "sbp": 125.0,
               "dbp": 78.0, "spo2": 97.5}
