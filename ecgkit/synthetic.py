"""A synthetic PTB-XL: a cohort of 12-lead ECGs from a physiological dipole model.

With no real data at hand the whole book must still run and its numbers must still mean
something, so the synthetic cohort is built from a model of how an ECG arises rather than from
noise:

* **One cardiac dipole.** Every beat is a 3-D vectorcardiogram (Frank X = right→left,
  Y = head→foot, Z = front→back) made of Gaussian-shaped waves (two for P, four or more for QRS,
  an asymmetric T, a U wave, and an ST plateau for injury/ischaemia currents). The eight
  independent leads I, II, V1–V6 are the projection of the dipole through the Dower (1980)
  transformation (:data:`DOWER`); III, aVR, aVL and aVF are derived from I and II (Einthoven,
  Goldberger), so the leads agree as real ones do. :data:`INVERSE_DOWER` (Edenbrandt & Pahlm
  1988) is provided for the way back (:func:`ecg_to_vcg`).
* **Conditions with their defining morphology** (see :data:`CONDITIONS`): sinus rhythm,
  bradycardia, tachycardia and arrhythmia, atrial fibrillation (no P, irregular RR, fibrillatory
  baseline), first-degree AV block, complete LBBB/RBBB, incomplete RBBB, left anterior fascicular
  block, LVH (Sokolow-Lyon > 3.5 mV, strain), left atrial enlargement, inferior / anterior /
  anteroseptal MI (pathological Q, ST-T changes, acute ST elevation), ischaemic ST depression
  and T inversion, non-specific T changes, long QT, electrolyte changes and low voltage.
  Labels are checked against the generated signal: rhythm labels come from the measured heart
  rate, LNGQT from the measured QTc, LVOLT from the measured limb-lead QRS amplitude.
* **Demographics and laboratory values that shape the ECG**: QTc is longer in women, QRS voltage
  falls with age and body-mass index, the axis turns left with age and weight; potassium,
  calcium and magnesium change T, U, QRS and QT; anaemia and hypoxaemia raise the heart rate;
  troponin rises with (acute) infarction, NT-proBNP with LVH, LBBB, AF and age.
* **Patients with several records** that keep their own morphology (identification tasks),
  patient-wise folds 1–10 stratified by diagnostic superclass.
* **Ground-truth fiducials** per beat and lead.

Files written by :func:`make_synthetic_ptbxl` (PTB-XL layout, so the PTB-XL reader loads it):

``records500/00000/00001_hr.{hea,dat}``, ``records100/00000/00001_lr.{hea,dat}``
    WFDB format 16 (little-endian int16), gain 1000 adu/mV (1 µV steps), baseline 0, units mV,
    10 s, leads ``I II III AVR AVL AVF V1 … V6`` as in PTB-XL's headers. Folders hold 1000
    records (ecg_id 1–999 in ``00000``, 1000–1999 in ``01000``, …). The 100 Hz copies are the
    500 Hz signal decimated by 5 with an anti-aliasing polyphase FIR (``scipy.signal.resample_poly``).
``ptbxl_database.csv``
    PTB-XL's 28 columns (``ecg_id`` first): ``patient_id`` (float), ``age``, ``sex`` (0 = male,
    1 = female), ``height`` (cm), ``weight`` (kg), ``report`` (machine-style English text),
    ``scp_codes`` (a Python-dict string such as ``"{'NORM': 100.0, 'SR': 0.0}"``), ``heart_axis``
    (MID, LAD, ALAD, RAD, ARAD), ``infarction_stadium1`` (``Stadium I`` acute, ``Stadium III``
    old), ``strat_fold`` (1–10), ``filename_lr``, ``filename_hr``, … (``baseline_drift`` and
    ``static_noise`` name the leads with drift over 0.8 mV peak-to-peak or mains + muscle noise
    over 0.03 mV rms, ``burst_noise`` marks muscle bursts, as PTB-XL's columns do).
``scp_statements.csv``
    The statements used, indexed by code, with PTB-XL's columns ``description, diagnostic, form,
    rhythm, diagnostic_class, diagnostic_subclass, Statement Category`` (flags are 1.0 or empty).
``labs.csv``
    ``ecg_id`` and the laboratory values and vitals of :data:`LAB_UNITS` (units there); some
    values are missing (empty) at the rates of :data:`LAB_MISSING`.
``fiducials.csv.gz``
    Ground truth in samples at 500 Hz (divide by 5 for the 100 Hz copies), columns
    ``ecg_id, lead, beat, p_on, p_peak, p_off, qrs_on, r_peak, qrs_off, t_peak, t_off``.
    For every beat whose QRS lies wholly inside the record there is one row with
    ``lead == "all"`` (the wave boundaries of the dipole; peaks where the spatial magnitude of
    the P, QRS and T loops is largest) and one row per lead (``I … V6``) with the same
    boundaries and lead-specific peaks: the wave's largest deflection in that lead, placed on
    the nearest local extremum of the clean (noise-free) lead in the same direction (the R
    wave where QRS is upright, the S/QS wave where it is negative). Boundaries are
    where the outermost Gaussian of the wave falls to 4.4 % (2.5 σ). -1 marks a wave that is
    absent (P in atrial fibrillation) or not wholly inside the record.
``ground_truth.csv``
    Per-record quantities measured on the clean signal and its fiducials (heart rate, PR, QRS,
    QT, QTc (Bazett), axis, Sokolow-Lyon voltage, …) and the noise levels used.
``README.md``, ``synthetic.json``
    What this folder is, and the parameters it was made with.
"""
from __future__ import annotations

import argparse
import ast
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import signal as sps
from scipy.special import expit

from .config import cache_dir
from .vocabulary import LAB_REFERENCE, LAB_UNITS, LEADS, SUPERCLASSES
from .versions import VERSIONS

__all__ = [
    "GENERATOR_VERSION", "CONDITIONS", "Condition", "LAB_UNITS", "LAB_REFERENCE", "LAB_MISSING",
    "DOWER", "INVERSE_DOWER", "HEADER_LEADS", "FIDUCIAL_COLUMNS",
    "make_synthetic_ptbxl", "synthetic_cohort", "simulate_ecg", "vcg_to_ecg", "ecg_to_vcg",
    "scp_statements", "main",
]

#: Bump when the generator changes what it writes (part of the cache key).
GENERATOR_VERSION = VERSIONS["synthetic"]

FS = 500
DURATION = 10.0
N_SAMPLES = int(FS * DURATION)
HEADER_LEADS = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
FIDUCIAL_COLUMNS = ("p_on", "p_peak", "p_off", "qrs_on", "r_peak", "qrs_off", "t_peak", "t_off")
_EDGE = 2.5  # a wave starts/ends where its outermost Gaussian is at exp(-2.5²/2) = 4.4 %

# --------------------------------------------------------------------------------------------
# Lead systems
# --------------------------------------------------------------------------------------------

#: Dower (1980) transformation, Frank X, Y, Z → I, II, V1–V6 (rows), as tabulated by
#: Edenbrandt & Pahlm (1988). X: right → left, Y: head → foot, Z: front → back.
DOWER = np.array([
    [0.632, -0.235, 0.059],    # I
    [0.235, 1.066, -0.132],    # II
    [-0.515, 0.157, -0.917],   # V1
    [0.044, 0.164, -1.387],    # V2
    [0.882, 0.098, -1.277],    # V3
    [1.213, 0.127, -0.601],    # V4
    [1.125, 0.127, -0.086],    # V5
    [0.831, 0.076, 0.230],     # V6
])

#: Inverse Dower matrix (Edenbrandt & Pahlm 1988): I, II, V1–V6 (columns, in that order) → X, Y, Z.
INVERSE_DOWER = np.array([
    # I      II      V1      V2      V3      V4      V5      V6
    [0.156, -0.010, -0.172, -0.074, 0.122, 0.231, 0.239, 0.194],   # X
    [-0.227, 0.887, 0.057, -0.019, -0.106, -0.022, 0.041, 0.048],  # Y
    [0.022, 0.102, -0.229, -0.310, -0.246, -0.063, 0.055, 0.108],  # Z
])


def _derive12(eight: np.ndarray) -> np.ndarray:
    """I, II, V1–V6 (… × 8) → the 12 standard leads (Einthoven and Goldberger)."""
    i, ii = eight[..., 0], eight[..., 1]
    limb = np.stack([i, ii, ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2], axis=-1)
    return np.concatenate([limb, eight[..., 2:]], axis=-1)


def vcg_to_ecg(vcg: np.ndarray) -> np.ndarray:
    """Frank X, Y, Z (samples × 3, mV) → the 12 standard leads (samples × 12) via :data:`DOWER`."""
    return _derive12(np.asarray(vcg, dtype=float) @ DOWER.T)


def ecg_to_vcg(ecg: np.ndarray) -> np.ndarray:
    """12 leads in :data:`LEADS` order (samples × 12) → X, Y, Z via :data:`INVERSE_DOWER`."""
    ecg = np.asarray(ecg, dtype=float)
    eight = np.concatenate([ecg[..., :2], ecg[..., 6:12]], axis=-1)
    return eight @ INVERSE_DOWER.T


def _unit(theta: float, phi: float) -> np.ndarray:
    """Unit vector: ``theta`` the angle in the frontal plane (0° = left, +90° = foot), ``phi``
    the tilt out of it (+ = towards the back, − = towards the front), degrees."""
    t, p = np.radians(theta), np.radians(phi)
    return np.array([np.cos(p) * np.cos(t), np.cos(p) * np.sin(t), np.sin(p)])


# --------------------------------------------------------------------------------------------
# Statements
# --------------------------------------------------------------------------------------------

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

_RHYTHMS = ("SR", "SBRAD", "STACH", "SARRH", "AFIB")
_DIAG_ORDER = ("NORM", "1AVB", "CLBBB", "CRBBB", "IRBBB", "LAFB", "LAO/LAE", "LVH", "IMI", "ASMI",
               "AMI", "ISC_", "ISCAL", "ISCIN", "NDT", "EL", "LNGQT")
# Conditions that cannot occur together in one record (one per group).
_EXCLUSIVE = (("CLBBB", "CRBBB", "IRBBB"), ("AMI", "ASMI"), ("ISC_", "ISCAL", "ISCIN", "NDT"),
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


# --------------------------------------------------------------------------------------------
# Laboratory values
# --------------------------------------------------------------------------------------------

# Columns of ``labs.csv`` (after ``ecg_id``) and their units: :data:`ecgkit.vocabulary.LAB_UNITS`;
# reference ranges: :data:`ecgkit.vocabulary.LAB_REFERENCE` (both imported above).
#: Probability that a value is missing from ``labs.csv`` (the ECG still reflects the true value).
LAB_MISSING = {
    "potassium": 0.03, "calcium": 0.06, "magnesium": 0.12, "troponin": 0.15, "nt_probnp": 0.2,
    "creatinine": 0.04, "haemoglobin": 0.04, "heart_rate": 0.01, "sbp": 0.02, "dbp": 0.02,
    "spo2": 0.03,
}
_NORMAL_LABS = {"potassium": 4.2, "calcium": 2.36, "magnesium": 0.86, "troponin": 6.0,
                "nt_probnp": 80.0, "creatinine": 80.0, "haemoglobin": 140.0, "sbp": 125.0,
                "dbp": 78.0, "spo2": 97.5}


# --------------------------------------------------------------------------------------------
# Patient traits and the morphology of one record
# --------------------------------------------------------------------------------------------

def _patient_traits(rng: np.random.Generator, age: float, sex: int, bmi: float) -> dict:
    """Stable, individual features of a patient's heart and chest (kept across records)."""
    female = sex == 1
    n = rng.standard_normal(40)
    volt_age = np.clip(1.0 - 0.006 * (age - 40.0), 0.68, 1.12)
    return {
        "theta": 22.0 - 0.3 * (age - 50.0) - 0.9 * (bmi - 25.0) + 13.0 * n[0],
        "phi": 18.0 + 6.0 * n[1],
        "M": 1.8 * np.exp(0.16 * n[2]) * (0.86 if female else 1.0) * volt_age
        * (25.0 / np.clip(bmi, 16, 45)) ** 0.6,
        "septal": (0.18 * np.exp(0.3 * n[3]), 150.0 + 15.0 * n[4], -40.0 + 10.0 * n[5]),
        "early": (0.30 * np.exp(0.25 * n[6]), -10.0 + 10.0 * n[7], -45.0 + 8.0 * n[8]),
        "late": (0.28 * np.exp(0.3 * n[9]), -150.0 + 20.0 * n[10], 50.0 + 10.0 * n[11]),
        "qrs_mu": np.array([14.0, 30.0, 44.0, 60.0]) + 1.5 * n[12:16],
        "qrs_sig": np.array([5.5, 7.0, 8.5, 7.5]) * np.exp(0.08 * n[16:20]),
        "qrs_dur": float(np.clip((92.0 if not female else 86.0) + 0.06 * (age - 50) + 5.0 * n[20],
                                 76, 108)),
        "pr": float(np.clip(150.0 + 0.35 * (age - 50) + 13.0 * n[21], 118, 194)),
        "p_dur": float(np.clip(98.0 + 0.1 * (age - 50) + 6.0 * n[22], 80, 114)),
        "p_amp": 0.105 * np.exp(0.2 * n[23]) * volt_age ** 0.5,
        "p_theta": 65.0 + 10.0 * n[24],
        "qtc": float(np.clip(408.0 + 15.0 * female + 0.25 * (age - 50) + 10.0 * n[25], 372, 446)),
        "t_amp": 0.42 * np.exp(0.2 * n[26]) * (0.86 if female else 1.0) * volt_age ** 0.5,
        "t_theta": 8.0 * n[27],  # relative to theta
        "t_phi": -25.0 + 8.0 * n[28],
        "hr": float(np.clip(74.0 + 3.0 * female - 0.06 * (age - 50) + 8.0 * n[29], 61, 96)),
        "rsa": 0.025 * np.exp(0.35 * n[30]) * (1.4 if age < 35 else 1.0),
        "hrv": 0.018 * np.exp(0.3 * n[31]),
        "resp": 0.25 * np.exp(0.15 * n[32]),
        "precordial_gain": np.exp(0.07 * rng.standard_normal(6)),
    }


@dataclass
class _Morph:
    """The morphology of one record in nominal units (ms for times, mV for amplitudes)."""

    qrs_mu: np.ndarray
    qrs_sig: np.ndarray
    qrs_amp: np.ndarray      # (n, 3)
    qrs_dur: float
    p_mu: np.ndarray
    p_sig: np.ndarray
    p_amp: np.ndarray        # (2, 3)
    p_dur: float
    pr: float
    t_vec: np.ndarray        # (3,) T-wave amplitude vector, mV
    t_sig_scale: float       # width factor (hyperkalaemia narrows)
    u_vec: np.ndarray        # (3,)
    st_vec: np.ndarray       # (3,) ST-plateau amplitude vector, mV
    st_down: float           # 0 = horizontal, 1 = downsloping
    qtc: float               # ms, Bazett, before the QT shift below
    qt_shift: float          # ms, added to QTc by calcium/potassium/magnesium (T width unchanged)
    qt_extra: float          # ms, added to QT by a wide QRS
    main: int                # index of the main QRS wave


def _fit(mu: np.ndarray, sig: np.ndarray, dur: float) -> tuple[np.ndarray, np.ndarray]:
    """Scale a group of Gaussians (ms) so that its 2.5 σ edges span [0, dur]."""
    lo = float(np.min(mu - _EDGE * sig))
    hi = float(np.max(mu + _EDGE * sig))
    s = dur / (hi - lo)
    return (mu - lo) * s, sig * s


def _project_out(v: np.ndarray, u: np.ndarray, c: float) -> np.ndarray:
    """Remove ``c`` times the component of ``v`` along unit ``u`` (c = 2 mirrors it)."""
    return v - c * float(v @ u) * u


def _morphology(tr: dict, conds: dict, labs: dict, acute: bool) -> _Morph:
    """Build the record's morphology from the patient's traits, conditions and electrolytes."""
    M = tr["M"]
    theta, phi = tr["theta"], tr["phi"]
    mu = tr["qrs_mu"].copy()
    sig = tr["qrs_sig"].copy()
    a_s, th_s, ph_s = tr["septal"]
    a_e, th_e, ph_e = tr["early"]
    a_l, th_l, ph_l = tr["late"]
    qrs_dur = tr["qrs_dur"]
    base_dur = qrs_dur

    if "LAFB" in conds:
        s = conds["LAFB"]
        theta = -64.0 - 10.0 * s + 0.15 * (tr["theta"] - 22.0)
        th_s, ph_s, a_s = 110.0, -20.0, max(a_s, 0.22)
        th_e = 40.0
        th_l, a_l = -110.0, a_l * 1.1
        qrs_dur = min(qrs_dur + 10.0 + 8.0 * s, 116.0)
    if "LVH" in conds:
        s = conds["LVH"]
        M *= 1.3 + 0.4 * s
        phi += 8.0
        a_l *= 1.3
        qrs_dur = min(qrs_dur + 6.0 + 8.0 * s, 116.0)

    amp = np.array([
        _unit(th_s, ph_s) * a_s,
        _unit(theta + th_e, ph_e) * a_e * M,
        _unit(theta, phi) * M,
        _unit(th_l, ph_l) * a_l * M,
    ])
    main = 2
    t_vec = _unit(theta + tr["t_theta"], tr["t_phi"]) * tr["t_amp"]
    st_vec = np.zeros(3)
    st_down = 0.0
    qt_extra = 0.0

    if "IMI" in conds:
        s = conds["IMI"]
        amp[0:2, 1] = -np.abs(amp[0:2, 1]) * 0.5            # no early inferior forces
        amp[main, 1] = np.where(amp[main, 1] > 0, amp[main, 1] * 0.45, amp[main, 1])
        mu = np.append(mu, 16.0)
        sig = np.append(sig, 9.5)
        amp = np.vstack([amp, _unit(-90.0 + 10.0 * (s - 0.5), 0.0) * (0.35 + 0.35 * s)])
        if acute:
            st_vec += _unit(90.0, 0.0) * (0.12 + 0.2 * s)
            t_vec[1] = abs(t_vec[1]) * 1.3 + 0.05
        else:
            t_vec[1] = -abs(t_vec[1]) * (0.6 + 0.8 * s) - 0.08
    for code, direction, strength in (("ASMI", (150.0, 68.0), 0.40), ("AMI", (180.0, 52.0), 0.45)):
        if code in conds:
            s = conds[code]
            amp[0:2, 2] = np.abs(amp[0:2, 2]) * 0.3            # no early anterior forces
            if code == "AMI":
                amp[1, 0] *= 0.4
            mu = np.append(mu, 16.0)
            sig = np.append(sig, 9.5)
            amp = np.vstack([amp, _unit(*direction) * (strength + 0.3 * s)])
            if acute:
                st_vec += _unit(20.0, -75.0) * (0.15 + 0.2 * s)
                t_vec[2] = -abs(t_vec[2]) * 1.3 - 0.05
            else:
                t_vec[2] = abs(t_vec[2]) * 0.4 + 0.12 + 0.2 * s
                t_vec[0] *= 0.4
    if "CLBBB" in conds:
        s = conds["CLBBB"]
        ml = M * (1.15 + 0.3 * s)
        th = min(theta, 15.0)
        mu = np.array([25.0, 55.0, 85.0])
        sig = np.array([12.0, 14.0, 16.0])
        amp = np.array([_unit(th + 5.0, 35.0) * 0.8 * ml, _unit(th, 75.0) * 0.7 * ml,
                        _unit(th - 10.0, 40.0) * ml])
        main = 2
        qrs_dur = 124.0 + 36.0 * s
        d = (amp * sig[:, None]).sum(0)
        d /= np.linalg.norm(d)
        t_vec = -d * (0.3 + 0.3 * s)
        st_vec += -d * (0.08 + 0.12 * s)
        qt_extra = 0.5 * (qrs_dur - base_dur)
    elif "CRBBB" in conds or "IRBBB" in conds:
        complete = "CRBBB" in conds
        s = conds["CRBBB"] if complete else conds["IRBBB"]
        amp[3] *= 0.6
        term_amp = (0.45 + 0.4 * s) if complete else (0.25 + 0.2 * s)
        mu = np.append(mu, 107.0 if complete else 95.0)
        sig = np.append(sig, 13.0 if complete else 10.0)
        amp = np.vstack([amp, _unit(180.0 + 12.0 * (s - 0.5), -40.0) * term_amp])
        if complete:
            qrs_dur = max(qrs_dur + 30.0, 124.0) + 28.0 * s
            t_vec[2] += 0.25 + 0.1 * s
            st_vec += np.array([0.0, 0.0, 0.05])
        else:
            qrs_dur = min(max(qrs_dur + 12.0, 100.0) + 10.0 * s, 116.0)
        qt_extra = 0.5 * (qrs_dur - base_dur)

    if "LVH" in conds and conds["LVH"] > 0.45:  # strain
        s = conds["LVH"]
        d = _unit(theta, phi)
        t_vec = _project_out(t_vec, d, 1.5 + 1.6 * (s - 0.45))
        st_vec += -d * (0.05 + 0.2 * (s - 0.45))
        st_down = max(st_down, 0.8)
    for code, u, c0 in (("ISC_", _unit(35.0, 0.0), 1.0), ("ISCAL", _unit(0.0, -25.0), 1.2),
                        ("ISCIN", _unit(90.0, 0.0), 1.2)):
        if code in conds:
            s = conds[code]
            st_vec += -u * (0.08 + 0.14 * s)
            t_vec = _project_out(t_vec, u, c0 + 1.1 * s)
            if code == "ISCIN":
                t_vec[1] = min(t_vec[1], -0.08)
            st_down = max(st_down, 0.6)
    if "NDT" in conds:
        t_vec = t_vec * (0.1 + 0.2 * (1.0 - conds["NDT"]))

    qtc = tr["qtc"]
    if "LNGQT" in conds:
        qtc = 474.0 + 60.0 * conds["LNGQT"]

    # P waves: right atrium first (anterior, inferior), left atrium second (posterior, leftward)
    p_mu = np.array([35.0, 60.0])
    p_sig = np.array([14.0, 14.0])
    pa = tr["p_amp"]
    p_amp = np.array([_unit(tr["p_theta"], -30.0) * pa, _unit(10.0, 15.0) * pa * 0.75])
    p_dur = tr["p_dur"]
    pr = tr["pr"]
    if "LAO/LAE" in conds:
        s = conds["LAO/LAE"]
        p_amp[1] = _unit(5.0, 40.0) * pa * (1.9 + 0.8 * s)
        p_mu[1] = 80.0
        p_dur = 120.0 + 20.0 * s
        pr = max(pr, p_dur + 40.0)
    if "1AVB" in conds:
        pr = 215.0 + 100.0 * conds["1AVB"]

    # electrolytes
    t_scale, t_sig_scale, u_rel, qt_shift = 1.0, 1.0, 0.06, 0.0
    k = labs.get("potassium", 4.2)
    if k > 5.2:
        t_scale *= 1.0 + 0.6 * (k - 5.2)
        t_sig_scale /= 1.0 + 0.28 * (k - 5.2)
    if k > 6.3:
        qrs_dur += 24.0 * (k - 6.3)
        p_amp *= max(0.15, 1.0 - 0.4 * (k - 6.3))
        pr += 15.0 * (k - 6.3)
    if k < 3.6:
        t_scale *= max(0.15, 1.0 - 0.5 * (3.6 - k))
        u_rel += 0.45 * (3.6 - k)
        st_vec += -t_vec / (np.linalg.norm(t_vec) + 1e-9) * 0.04 * (3.6 - k)
        qt_shift += 25.0 * (3.6 - k)
    ca = labs.get("calcium", 2.36)
    qt_shift += float(np.clip(-110.0 * (ca - 2.36), -110.0, 110.0))
    mg = labs.get("magnesium", 0.86)
    if mg < 0.7:
        qt_shift += 40.0 * (0.7 - mg)
        t_scale *= 0.9
    u_vec = t_vec * u_rel
    t_vec = t_vec * t_scale
    if "1AVB" not in conds:
        pr = min(pr, 198.0)         # a PR over 200 ms is labelled 1AVB, so stay under it
    if not {"CLBBB", "CRBBB"} & set(conds):
        qrs_dur = min(qrs_dur, 116.0)  # a QRS of 120 ms or more is labelled as a block

    mu, sig = _fit(mu, sig, qrs_dur)
    p_mu, p_sig = _fit(p_mu, p_sig, p_dur)
    return _Morph(mu, sig, amp, qrs_dur, p_mu, p_sig, p_amp, p_dur, pr, t_vec, t_sig_scale,
                  u_vec, st_vec, st_down, qtc, qt_shift, qt_extra, main)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

def _render_gauss(n: int, fs: float, mu: np.ndarray, sig: np.ndarray, amp: np.ndarray) -> np.ndarray:
    """Sum of Gaussians (centres ``mu`` and widths ``sig`` in s, amplitudes (m, 3)) → (n, 3)."""
    out = np.zeros((n, 3))
    if mu.size == 0:
        return out
    half = int(np.ceil(4.2 * sig.max() * fs))
    offs = np.arange(-half, half + 1)
    c = np.rint(mu * fs).astype(np.int64)
    idx = c[:, None] + offs[None, :]
    g = np.exp(-0.5 * ((idx / fs - mu[:, None]) / sig[:, None]) ** 2)
    ok = (idx >= 0) & (idx < n)
    iv = idx[ok]
    for k in range(3):
        out[:, k] = np.bincount(iv, weights=(g * amp[:, k, None])[ok], minlength=n)
    return out


def _render_plateau(n: int, fs: float, a: np.ndarray, b: np.ndarray, ra: float,
                    rb: np.ndarray, amp: np.ndarray) -> np.ndarray:
    """Sum of smooth plateaus rising at ``a`` (ramp ``ra``) and falling at ``b`` (ramps ``rb``)."""
    out = np.zeros((n, 3))
    if a.size == 0 or not np.any(amp):
        return out
    start = np.floor((a - 6 * ra) * fs).astype(np.int64)
    length = int(np.ceil(((b + 6 * rb) - (a - 6 * ra)).max() * fs)) + 2
    idx = start[:, None] + np.arange(length)[None, :]
    t = idx / fs
    g = expit((t - a[:, None]) / ra) * expit(-(t - b[:, None]) / rb[:, None])
    ok = (idx >= 0) & (idx < n)
    iv = idx[ok]
    for k in range(3):
        out[:, k] = np.bincount(iv, weights=(g * amp[:, k, None])[ok], minlength=n)
    return out


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation matrix from small angles (radians) about X, Y and Z."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _rotations_z(angles: np.ndarray) -> np.ndarray:
    c, s = np.cos(angles), np.sin(angles)
    r = np.zeros((angles.size, 3, 3))
    r[:, 0, 0], r[:, 0, 1], r[:, 1, 0], r[:, 1, 1], r[:, 2, 2] = c, -s, s, c, 1.0
    return r


def _t_sigma(m: _Morph, rr: float) -> float:
    """Width (s) of the descending limb of T for a beat at RR ``rr`` s."""
    qt = m.qtc * np.sqrt(rr) + m.qt_extra
    return float(np.clip(0.125 * (qt - m.qrs_dur), 22.0, 75.0) * m.t_sig_scale) / 1000.0


@dataclass
class _Beats:
    qrs_on: np.ndarray      # s
    rr_prev: np.ndarray     # s
    p_on: np.ndarray        # s, nan where no P
    qrs_scale: np.ndarray
    t_scale: np.ndarray
    rot: np.ndarray         # (b, 3, 3)


def _beats(m: _Morph, rhythm: str, hr: float, tr: dict, rng: np.random.Generator,
           duration: float, rsa: float) -> _Beats:
    """Beat times and per-beat variability (RR, respiration, amplitude)."""
    rr_mean = 60.0 / hr
    t0 = -1.2 - rng.uniform(0.0, rr_mean)
    nb = int(np.ceil((duration + 2.5 - t0) / (0.55 * rr_mean))) + 4
    resp_f = tr["resp"]
    resp_ph = rng.uniform(0, 2 * np.pi)
    if rhythm == "AFIB":
        qt_min = (m.qtc * np.sqrt(0.35) + m.qt_extra + m.qt_shift) / 1000.0 + 0.05
        for _ in range(20):
            rr = rr_mean * np.exp(rng.normal(0.0, rng.uniform(0.18, 0.3), nb))
            rr = np.maximum(rr, max(0.3, qt_min))
            inside = rr[: int(duration / rr_mean) + 2]
            if np.std(inside) / np.mean(inside) >= 0.12:
                break
        rr *= rr_mean / np.mean(rr)
        rr = np.maximum(rr, max(0.3, qt_min))
    else:
        ar = np.zeros(nb)
        e = rng.standard_normal(nb)
        for i in range(1, nb):
            ar[i] = 0.6 * ar[i - 1] + 0.8 * e[i]
        rr = np.empty(nb)
        t = t0
        for i in range(nb):  # respiratory sinus arrhythmia: RR follows the breathing phase
            rr[i] = rr_mean * (1.0 + rsa * np.sin(2 * np.pi * resp_f * t + resp_ph)
                               + tr["hrv"] * ar[i])
            t += rr[i]
    onsets = t0 + np.concatenate([[0.0], np.cumsum(rr[:-1])])
    keep = onsets < duration + 1.2
    onsets, rr = onsets[keep], rr[keep]
    rr_prev = np.concatenate([[rr_mean], rr[:-1]])
    b = onsets.size
    resp = np.sin(2 * np.pi * resp_f * onsets + resp_ph + 0.7)
    qrs_scale = 1.0 + 0.05 * resp + 0.02 * rng.standard_normal(b)
    t_scale = 1.0 + 0.03 * rng.standard_normal(b)
    rot = _rotations_z(np.radians(3.0 * resp))
    if rhythm == "AFIB":
        p_on = np.full(b, np.nan)
    else:
        p_on = onsets - (m.pr + 3.0 * rng.standard_normal(b)) / 1000.0
    return _Beats(onsets, rr_prev, p_on, qrs_scale, t_scale, rot)


def _render(m: _Morph, bt: _Beats, n: int, fs: float, rec_rot: np.ndarray, af: dict | None):
    """Render the P, QRS and T(+U, ST) groups of every beat as (n, 3) dipole signals."""
    b = bt.qrs_on.size
    rot = bt.rot @ rec_rot  # (b, 3, 3)
    # QRS
    mu = bt.qrs_on[:, None] + m.qrs_mu[None, :] / 1000.0
    sg = np.broadcast_to(m.qrs_sig[None, :] / 1000.0, mu.shape)
    amp = np.einsum("bij,wj->bwi", rot, m.qrs_amp) * bt.qrs_scale[:, None, None]
    qrs = _render_gauss(n, fs, mu.ravel(), sg.ravel(), amp.reshape(-1, 3))
    # P
    has_p = ~np.isnan(bt.p_on)
    if has_p.any():
        pon = bt.p_on[has_p]
        pmu = pon[:, None] + m.p_mu[None, :] / 1000.0
        psg = np.broadcast_to(m.p_sig[None, :] / 1000.0, pmu.shape)
        pamp = np.einsum("bij,wj->bwi", rot[has_p], m.p_amp)
        p = _render_gauss(n, fs, pmu.ravel(), psg.ravel(), pamp.reshape(-1, 3))
    else:
        p = np.zeros((n, 3))
    # T: main descending Gaussian, broader ascending shoulder, U wave; ST plateau
    qt = (m.qtc + m.qt_shift) * np.sqrt(bt.rr_prev) / 1000.0 + m.qt_extra / 1000.0
    t_off = bt.qrs_on + qt
    ts = np.array([_t_sigma(m, r) for r in bt.rr_prev])
    mu_t = t_off - _EDGE * ts
    tv = np.einsum("bij,j->bi", rot, m.t_vec) * bt.t_scale[:, None]
    uv = np.einsum("bij,j->bi", rot, m.u_vec)
    tmu = np.stack([mu_t, mu_t - 1.2 * ts], 1)
    tsg = np.stack([ts, 1.4 * ts], 1)
    tamp = np.stack([tv, 0.4 * tv], 1)
    t = _render_gauss(n, fs, tmu.ravel(), tsg.ravel(), tamp.reshape(-1, 3))
    u = _render_gauss(n, fs, t_off + 0.06, np.full(b, 0.035), uv) if np.any(m.u_vec) else 0.0
    qrs_off = bt.qrs_on + m.qrs_dur / 1000.0
    if np.any(m.st_vec):
        sv = np.einsum("bij,j->bi", rot, m.st_vec)
        rb = (0.6 + 0.8 * m.st_down) * ts
        st = _render_plateau(n, fs, qrs_off - 0.012, mu_t - 0.4 * m.st_down * ts, 0.007, rb, sv)
    else:
        st = 0.0
    other = np.zeros((n, 3)) + u + st
    if af is not None:
        other = other + af["signal"]
    timing = {"qrs_on": bt.qrs_on, "qrs_off": qrs_off, "t_off": t_off,
              "p_on": bt.p_on, "p_off": bt.p_on + m.p_dur / 1000.0}
    return p, qrs, t, other, timing


def _af_waves(n: int, fs: float, rng: np.random.Generator, amp: float) -> np.ndarray:
    """Fibrillatory atrial activity (4–9 Hz, drifting frequency and amplitude) as a dipole."""
    t = np.arange(n) / fs
    out = np.zeros((n, 3))
    for d, rel in ((_unit(140.0, -37.0), 1.0), (_unit(60.0, 10.0), 0.45)):
        f0 = rng.uniform(5.0, 7.5)
        f = f0 + 0.7 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + rng.uniform(0, 6.3))
        ph = 2 * np.pi * np.cumsum(f) / fs + rng.uniform(0, 6.3)
        a = amp * rel * (1.0 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t
                                              + rng.uniform(0, 6.3)))
        w = a * (np.sin(ph) + 0.35 * np.sin(2 * ph + rng.uniform(0, 6.3)))
        out += w[:, None] * d[None, :]
    return out


# --------------------------------------------------------------------------------------------
# Measurement of a clean template beat (used to keep labels true to the signal)
# --------------------------------------------------------------------------------------------

def _template(m: _Morph, rr: float, proj: np.ndarray = DOWER, rot: np.ndarray | None = None,
              fs: float = FS) -> tuple[np.ndarray, int, int]:
    """One clean beat (12 leads) with its QRS on/off sample; QRS onset at 0.4 s.

    ``proj`` is the record's lead projection (Dower with electrode gains), ``rot`` its rotation."""
    n = int(fs * (0.4 + rr + 0.3))
    bt = _Beats(np.array([0.4]), np.array([rr]), np.array([0.4 - m.pr / 1000.0]),
                np.ones(1), np.ones(1), np.eye(3)[None])
    p, qrs, t, other, _ = _render(m, bt, n, fs, np.eye(3) if rot is None else rot, None)
    ecg = _derive12((p + qrs + t + other) @ proj.T)
    on = int(round(0.4 * fs))
    return ecg, on, int(round((0.4 + m.qrs_dur / 1000.0) * fs))


def _sokolow(ecg: np.ndarray, on: int, off: int) -> float:
    q = ecg[on:off + 1]
    return float(-min(q[:, 6].min(), 0.0) + max(q[:, 10].max(), q[:, 11].max()))


def _axis(ecg: np.ndarray, on: int, off: int) -> float:
    q = ecg[on:off + 1]
    return float(np.degrees(np.arctan2(q[:, 5].sum(), q[:, 0].sum())))


def _q_depth(ecg: np.ndarray, on: int, leads: list[int], fs: float = FS) -> float:
    """Shallowest Q depth over ``leads`` (mV, ≥ 0): the most negative value in the first 40 ms
    of QRS before the first positive deflection over 0.05 mV (an r wave ends the Q wave)."""
    depths = []
    for j in leads:
        w = ecg[on:on + int(0.04 * fs) + 1, j] - ecg[on, j]
        up = np.nonzero(w > 0.05)[0]
        w = w[:up[0]] if up.size else w
        depths.append(max(0.0, -float(w.min())) if w.size else 0.0)
    return float(min(depths))


def _enforce(m: _Morph, conds: dict, rr: float, proj: np.ndarray,
             rot: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Adjust amplitudes so that every label's criterion holds on the clean signal (in place).

    Returns the clean template beat of the final morphology."""
    main_late = [m.main] + ([3] if m.qrs_amp.shape[0] > 3 and "CLBBB" not in conds else [])
    check_axis = "LAFB" in conds or ("IMI" not in conds and "CLBBB" not in conds)
    q_checks = [(code, leads) for code, leads in
                (("IMI", [2, 5]), ("ASMI", [7, 8]), ("AMI", [7, 8, 9])) if code in conds]
    for _ in range(16):
        ecg, on, off = _template(m, rr, proj, rot)
        changed = False
        sl = _sokolow(ecg, on, off)
        if "LVH" in conds:
            lo, hi = 3.6 + 1.1 * conds["LVH"], 4.6 + 1.8 * conds["LVH"]
            if not lo <= sl <= hi:
                m.qrs_amp[main_late] *= float(np.clip((lo if sl < lo else hi) / sl, 0.6, 1.6)) * (
                    1.02 if sl < lo else 0.98)
                changed = True
        elif "CLBBB" not in conds and sl > 3.3:
            m.qrs_amp[main_late] *= 3.25 / sl
            changed = True
        if check_axis and not changed:
            ax = _axis(ecg, on, off)
            step = -6.0 if "LAFB" in conds and ax > -50.0 else \
                6.0 if "LAFB" not in conds and ax < -40.0 else 0.0
            if step:
                r = _rotation(0.0, 0.0, np.radians(step))  # turn about Z (frontal plane)
                m.qrs_amp[[1, m.main]] = m.qrs_amp[[1, m.main]] @ r.T
                changed = True
        if not changed:
            for code, leads in q_checks:
                if _q_depth(ecg, on, leads) < 0.15:
                    row = -2 if code == "IMI" and len(q_checks) > 1 else -1
                    m.qrs_amp[row] *= 1.25
                    changed = True
        if not changed:
            return ecg, on, off
    return _template(m, rr, proj, rot)


# --------------------------------------------------------------------------------------------
# Noise (electrode level, so that Einthoven's and Goldberger's relations hold)
# --------------------------------------------------------------------------------------------

def _to_leads(e: np.ndarray) -> np.ndarray:
    """Electrode potentials (9, n: RA, LA, LL, V1–V6) → I, II, V1–V6 (n, 8)."""
    ra, la, ll = e[0], e[1], e[2]
    wct = (ra + la + ll) / 3.0
    return np.column_stack([la - ra, ll - ra, (e[3:] - wct).T])


def _noise(n: int, fs: float, rng: np.random.Generator, levels: dict,
           resp_f: float) -> tuple[np.ndarray, dict]:
    """Baseline wander, mains hum and muscle noise at the 9 electrodes → 8 leads (n, 8), mV.

    Also returns, per lead of the 12, the peak-to-peak baseline drift and the rms of the
    mains + muscle noise (for the PTB-XL noise columns)."""
    t = np.arange(n) / fs
    base = np.zeros((9, n))
    bw = levels.get("baseline", 0.0)
    if bw > 0:  # slow: computed on a 50 Hz grid and interpolated
        step = max(1, int(round(fs / 50.0)))
        tc = t[::step]
        if tc[-1] < t[-1]:
            tc = np.append(tc, t[-1])
        f = rng.uniform(0.05, 0.45, (9, 3))
        ph = rng.uniform(0, 2 * np.pi, (9, 3))
        a = bw * rng.uniform(0.2, 1.0, (9, 3))
        coarse = np.einsum("ek,ekn->en", a, np.sin(2 * np.pi * f[:, :, None] * tc + ph[:, :, None]))
        coarse += bw * 0.6 * rng.uniform(0.0, 1.0, (9, 1)) * np.sin(
            2 * np.pi * resp_f * tc + rng.uniform(0, 2 * np.pi))
        for k in range(9):
            base[k] = np.interp(t, tc, coarse[k])
    hf = np.zeros((9, n))
    mains = levels.get("mains", 0.0)
    if mains > 0:
        ph = rng.uniform(0, 2 * np.pi) + rng.normal(0, 0.3, 9)
        a = mains * rng.uniform(0.3, 1.0, 9)
        w = 2 * np.pi * 50.0 * t
        s1, c1, s3, c3 = np.sin(w), np.cos(w), np.sin(3 * w), np.cos(3 * w)
        cp, sp = (a * np.cos(ph))[:, None], (a * np.sin(ph))[:, None]
        hf += cp * s1 + sp * c1 + 0.15 * (cp * s3 + sp * c3)
    emg = levels.get("muscle", 0.0)
    if emg > 0:
        # white noise, differenced (high-pass) and smoothed over two samples: a band-pass
        # spectrum peaking near fs/4 (125 Hz at 500 Hz), like surface EMG
        w = rng.standard_normal((9, n + 2))
        x = (w[:, 2:] - w[:, :-2]) * 0.5
        env = np.ones(n)
        for _ in range(int(levels.get("bursts", 0))):
            c, width = rng.uniform(0, n / fs), rng.uniform(0.3, 1.2)
            env += rng.uniform(2.0, 5.0) * np.exp(-0.5 * ((t - c) / (width / 2)) ** 2)
        gain = np.array([1.5, 1.5, 1.2, 1, 1, 1, 1, 1, 1])[:, None]
        hf += (emg / np.sqrt(0.5)) * gain * env[None, :] * x
    b8, h8 = _to_leads(base), _to_leads(hf)
    b12 = _derive12(b8)
    stats = {"drift": b12.max(0) - b12.min(0), "static": _derive12(h8).std(0)}
    return b8 + h8, stats


# --------------------------------------------------------------------------------------------
# One record
# --------------------------------------------------------------------------------------------

def _peaks(x: np.ndarray, on: np.ndarray, off: np.ndarray, comp: np.ndarray) -> np.ndarray:
    """Per beat and lead: the peak of a wave.

    The wave's own component ``comp`` (n, L) gives its largest deflection in [on, off]; the
    peak is the local extremum of the clean signal ``x`` (n, L) (with whatever overlaps the
    wave: ST shifts, f waves) in the same direction that lies nearest to it, so that the
    recorded signal really peaks there. Returns (b, L) sample indices (-1 where on < 0)."""
    b, nl = on.size, x.shape[1]
    out = np.full((b, nl), -1, dtype=np.int64)
    ok = on >= 0
    if not ok.any():
        return out
    on_, off_ = on[ok], off[ok]
    w = int((off_ - on_).max()) + 1
    pos = np.arange(w)
    idx = on_[:, None] + pos[None, :]
    inside = (idx <= off_[:, None])[:, :, None]
    n = x.shape[0]
    c = np.where(inside, np.abs(comp[np.minimum(idx, n - 1)]), -1.0).argmax(axis=1)  # (b, L)
    sign = np.sign(np.take_along_axis(comp[np.minimum(idx, n - 1)], c[:, None, :], axis=1)[:, 0])
    v = x[np.clip(idx, 0, n - 1)]
    prev = x[np.clip(idx - 1, 0, n - 1)]
    nxt = x[np.clip(idx + 1, 0, n - 1)]
    d1, d2 = v - prev, nxt - v
    flat = (d1 == 0) & (d2 == 0)
    is_max = (d1 >= 0) & (d2 <= 0) & ~flat
    is_min = (d1 <= 0) & (d2 >= 0) & ~flat
    want = np.where(sign[:, None, :] >= 0, is_max, is_min) & inside
    dist = np.abs(pos[None, :, None] - c[:, None, :]).astype(float)
    score = np.where(want, -dist, -np.inf)
    best = score.argmax(axis=1)
    found = np.isfinite(score.max(axis=1))
    best = np.where(found, best, c)
    out[ok] = on_[:, None] + best
    return out


def _global_peak(comp: np.ndarray, on: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Per beat: where the spatial magnitude of a wave's dipole is largest in [on, off]."""
    out = np.full(on.size, -1, dtype=np.int64)
    ok = on >= 0
    if not ok.any():
        return out
    mag = np.linalg.norm(comp, axis=1)
    on_, off_ = on[ok], off[ok]
    idx = on_[:, None] + np.arange(int((off_ - on_).max()) + 1)[None, :]
    inside = idx <= off_[:, None]
    v = np.where(inside, mag[np.minimum(idx, mag.size - 1)], -1.0)
    out[ok] = on_ + v.argmax(axis=1)
    return out


@dataclass
class _Plan:
    """Everything that decides one record."""

    seed: tuple
    age: float
    sex: int
    height: float
    weight: float
    traits: dict
    conds: dict          # structural / ST-T conditions → severity in [0, 1]
    rhythm: str          # "sinus" or "AFIB"
    hr: float
    rsa: float
    acute: bool
    labs: dict           # true values (the ECG reflects these)
    noise: dict          # mV levels
    af_amp: float = 0.08


def _simulate(plan: _Plan, duration: float = DURATION, fs: float = FS) -> dict:
    """Render one record: clean and noise 8-lead signals (mV), fiducials and measurements."""
    n = int(round(duration * fs))
    ss = np.random.SeedSequence(list(plan.seed))
    r_beats, r_rot, r_noise, r_af = (np.random.default_rng(s) for s in ss.spawn(4))
    tr = plan.traits
    m = _morphology(tr, plan.conds, plan.labs, plan.acute)
    rr_mean = 60.0 / plan.hr
    rec_rot = _rotation(*np.radians(r_rot.normal(0.0, 2.5, 3)))
    gain = np.concatenate([[1.0, 1.0], tr["precordial_gain"] * np.exp(r_rot.normal(0, 0.03, 6))])
    proj = DOWER * gain[:, None]  # electrode placement: precordial gains differ a little
    template = _enforce(m, plan.conds, rr_mean, proj, rec_rot)
    bt = _beats(m, plan.rhythm, plan.hr, tr, r_beats, duration, plan.rsa)
    af = {"signal": _af_waves(n, fs, r_af, plan.af_amp)} if plan.rhythm == "AFIB" else None
    p, qrs, t, other, tim = _render(m, bt, n, fs, rec_rot, af)
    clean8 = (p + qrs + t + other) @ proj.T
    noise8, nstats = _noise(n, fs, r_noise, plan.noise, tr["resp"]) if any(
        plan.noise.get(k, 0) > 0 for k in ("baseline", "mains", "muscle")) else (None, None)

    # fiducials (samples at fs)
    r = lambda x: np.rint(np.asarray(x) * fs).astype(np.int64)  # noqa: E731
    qrs_on, qrs_off, t_off = r(tim["qrs_on"]), r(tim["qrs_off"]), r(tim["t_off"])
    keep = (qrs_on >= 0) & (qrs_off <= n - 1)
    qrs_on, qrs_off, t_off = qrs_on[keep], qrs_off[keep], t_off[keep]
    p_on_s = tim["p_on"][keep]
    has_p = ~np.isnan(p_on_s)
    p_on = np.where(has_p, r(np.nan_to_num(p_on_s, nan=-1.0)), -1)
    p_off = np.where(has_p, r(np.nan_to_num(tim["p_off"][keep], nan=-1.0)), -1)
    p_ok = has_p & (p_on >= 0)
    p_on, p_off = np.where(p_ok, p_on, -1), np.where(p_ok, p_off, -1)
    t_ok = t_off <= n - 1
    t_off = np.where(t_ok, t_off, -1)
    clean12 = _digital(clean8).astype(float) / 1000.0  # what a clean record's file holds
    g = {"p_on": p_on, "p_off": p_off, "qrs_on": qrs_on, "qrs_off": qrs_off, "t_off": t_off}
    g["r_peak"] = _global_peak(qrs, qrs_on, qrs_off)
    g["p_peak"] = np.where(p_ok, _global_peak(p, np.where(p_ok, p_on, -1), p_off), -1)
    g["t_peak"] = np.where(t_ok, _global_peak(t, np.where(t_ok, qrs_off, -1), t_off), -1)
    lead = {
        "r_peak": _peaks(clean12, qrs_on, qrs_off, _derive12(qrs @ proj.T)),
        "p_peak": _peaks(clean12, np.where(p_ok, p_on, -1), p_off, _derive12(p @ proj.T)),
        "t_peak": _peaks(clean12, np.where(t_ok, qrs_off, -1), t_off, _derive12(t @ proj.T)),
    }
    meas = _measure(m, g, fs, plan, rr_mean, template)
    return {"clean8": clean8, "noise8": noise8, "noise_stats": nstats, "global": g, "lead": lead, "meas": meas,
            "morph": m}


def _measure(m: _Morph, g: dict, fs: float, plan: _Plan, rr_mean: float, template) -> dict:
    """Quantities measured on the clean signal and the fiducials (these decide several labels)."""
    rp = g["r_peak"]
    rr = np.diff(rp) / fs
    hr = 60.0 / rr.mean() if rr.size else 60.0 / rr_mean
    qt = (g["t_off"][1:] - g["qrs_on"][1:]) / fs
    okq = g["t_off"][1:] >= 0
    qtc = float(np.median(qt[okq] / np.sqrt(rr[okq])) * 1000.0) if okq.any() else np.nan
    pr = g["qrs_on"] - g["p_on"]
    pr = float(np.median(pr[g["p_on"] >= 0]) / fs * 1000.0) if (g["p_on"] >= 0).any() else np.nan
    ecg, on, off = template
    q = ecg[on:off + 1]
    limb_pp = float((q[:, :6].max(0) - q[:, :6].min(0)).max())
    return {
        "heart_rate": float(hr), "rr_mean_ms": float(rr.mean() * 1000) if rr.size else np.nan,
        "rr_sd_ms": float(rr.std() * 1000) if rr.size else np.nan,
        "rr_cv": float(rr.std() / rr.mean()) if rr.size else np.nan,
        "pr_ms": pr, "p_ms": m.p_dur if plan.rhythm != "AFIB" else np.nan,
        "qrs_ms": float(np.median(g["qrs_off"] - g["qrs_on"]) / fs * 1000.0),
        "qt_ms": float(np.median(qt[okq]) * 1000.0) if okq.any() else np.nan, "qtc_ms": qtc,
        "axis_deg": _axis(ecg, on, off), "sokolow_lyon_mv": _sokolow(ecg, on, off),
        "limb_qrs_max_mv": limb_pp,
        "t_amp_v3_mv": float(ecg[off:, 8][np.argmax(np.abs(ecg[off:, 8]))]),
        "t_amp_ii_mv": float(ecg[off:, 1][np.argmax(np.abs(ecg[off:, 1]))]),
    }


# --------------------------------------------------------------------------------------------
# Labels and reports
# --------------------------------------------------------------------------------------------

def _likelihood(sev: float) -> float:
    return 100.0 if sev >= 0.45 else 80.0 if sev >= 0.3 else 50.0 if sev >= 0.18 else \
        35.0 if sev >= 0.08 else 15.0


def _labels(plan: _Plan, meas: dict, norm_lik: float = 100.0) -> tuple[dict, str, str, dict]:
    """(scp_codes dict, report text, heart_axis, extra) from the plan and the measurements."""
    diag: dict[str, float] = {}
    for code in _DIAG_ORDER:
        if code in plan.conds and code != "LNGQT":
            diag[code] = _likelihood(plan.conds[code])
    qtc = meas["qtc_ms"]
    if np.isfinite(qtc) and qtc > 460.0:
        diag["LNGQT"] = 100.0 if qtc > 490 else 80.0 if qtc > 475 else 50.0
    k = plan.labs.get("potassium", 4.2)
    if k >= 6.0 or k <= 3.0:
        diag["EL"] = 80.0 if (k >= 6.5 or k <= 2.7) else 50.0
    form: dict[str, float] = {}
    if meas["limb_qrs_max_mv"] < 0.5:
        form["LVOLT"] = 0.0
    if plan.rhythm == "AFIB":
        rhythm = "AFIB"
    elif meas["heart_rate"] < 60:
        rhythm = "SBRAD"
    elif meas["heart_rate"] > 100:
        rhythm = "STACH"
    elif plan.rsa >= 0.07 and meas["rr_cv"] > 0.05:
        rhythm = "SARRH"
    else:
        rhythm = "SR"
    if not diag and plan.rhythm != "AFIB":
        diag["NORM"] = norm_lik
    codes = {**dict(sorted(diag.items(), key=lambda kv: -kv[1])), **form, rhythm: 0.0}

    # report, machine style
    def qualify(code: str, text: str) -> str:
        lik = codes[code]
        if lik >= 100:
            return text
        if lik >= 80:
            return "Probable " + text[0].lower() + text[1:]
        if lik >= 50:
            return "Possible " + text[0].lower() + text[1:]
        return "Cannot rule out " + text[0].lower() + text[1:]

    lines = []
    rtxt = CONDITIONS[rhythm].report
    if rhythm == "AFIB":
        if meas["heart_rate"] > 110:
            rtxt += " with rapid ventricular response"
        elif meas["heart_rate"] < 60:
            rtxt += " with slow ventricular response"
    if "1AVB" in codes:
        rtxt += " with " + ("" if codes["1AVB"] >= 100 else "possible ") + "1st degree A-V block"
    lines.append(rtxt)
    strain = "LVH" in plan.conds and plan.conds["LVH"] > 0.45
    for code in _DIAG_ORDER:
        if code in ("NORM", "1AVB") or code not in codes:
            continue
        text = CONDITIONS[code].report
        if code in ("IMI", "AMI", "ASMI"):
            text += ", possibly acute" if plan.acute else " - age undetermined"
        if code == "LVH" and strain:
            text += " with repolarization abnormality"
        if code == "EL":
            text = ("Peaked T waves, consider hyperkalemia" if k >= 6.0 else
                    "Prominent U waves, consider hypokalemia")
        lines.append(qualify(code, text))
    if "LVOLT" in codes:
        lines.append(CONDITIONS["LVOLT"].report)
    if "NORM" in codes:
        lines.append("Normal ECG" if rhythm == "SR" and "LVOLT" not in codes
                     else "Otherwise normal ECG")
    elif rhythm == "AFIB" or any(v >= 50 for c, v in codes.items()
                                 if CONDITIONS[c].kind == "diagnostic"):
        lines.append("Abnormal ECG")
    else:
        lines.append("Borderline ECG")
    report = ". ".join(lines) + "."

    ax = meas["axis_deg"]
    axis = ("MID" if -30 <= ax <= 90 else "LAD" if -45 < ax < -30 else "ALAD" if -90 <= ax <= -45
            else "RAD" if 90 < ax <= 120 else "ARAD")
    return codes, report, axis, {"rhythm": rhythm}


# --------------------------------------------------------------------------------------------
# The cohort plan
# --------------------------------------------------------------------------------------------

# phenotype: (weight, mean age, sd age, probability male)
_PHENOTYPES = {
    "normal": (0.25, 48, 17, 0.48), "athlete": (0.05, 30, 10, 0.6), "tachy": (0.05, 45, 18, 0.4),
    "af": (0.07, 72, 9, 0.55), "1avb": (0.05, 66, 12, 0.55), "lbbb": (0.04, 70, 10, 0.5),
    "rbbb": (0.05, 67, 12, 0.6), "irbbb": (0.02, 45, 18, 0.6), "lafb": (0.05, 64, 12, 0.6),
    "lvh": (0.08, 64, 12, 0.6), "lae": (0.015, 62, 12, 0.5), "imi": (0.06, 63, 11, 0.72),
    "ami": (0.06, 63, 11, 0.72), "ischaemia": (0.06, 65, 11, 0.55), "lqts": (0.025, 40, 16, 0.4),
    "hyperk": (0.03, 68, 12, 0.55), "hypok": (0.025, 58, 16, 0.45), "calcium": (0.02, 60, 15, 0.45),
    "ndt": (0.03, 55, 15, 0.5),
}


def _allocate(n_patients: int, rng: np.random.Generator) -> list[str]:
    """Phenotypes for ``n_patients``: proportional, every phenotype once when there is room."""
    names = list(_PHENOTYPES)
    w = np.array([_PHENOTYPES[k][0] for k in names])
    w = w / w.sum()
    counts = np.floor(w * n_patients).astype(int)
    if n_patients >= len(names):
        counts = np.maximum(counts, 1)
    while counts.sum() > n_patients:
        counts[np.argmax(counts)] -= 1
    rest = n_patients - counts.sum()
    if rest > 0:
        frac = w * n_patients - counts
        order = np.argsort(-frac + 1e-9 * rng.random(len(names)))
        for i in range(rest):
            counts[order[i % len(names)]] += 1
    out = [name for name, c in zip(names, counts) for _ in range(c)]
    rng.shuffle(out)
    return out


def _severity(rng: np.random.Generator) -> float:
    return float(np.clip(rng.beta(2.2, 1.6), 0.02, 1.0))


def _patient_plans(pid: int, phen: str, n_rec: int, seed: int, noise: dict) -> list[dict]:
    """The records of one patient: demographics, traits, conditions, labs, noise."""
    rng = np.random.default_rng([seed, 11, pid])
    _, mage, sdage, pmale = _PHENOTYPES[phen]
    sex = int(rng.random() >= pmale)             # PTB-XL: 0 male, 1 female
    age0 = float(np.clip(rng.normal(mage, sdage), 18, 92))
    height = rng.normal(176.0, 7.0) if sex == 0 else rng.normal(163.5, 6.5)
    bmi = float(np.clip(rng.normal(26.5 + 0.04 * (age0 - 50), 4.2), 17.0, 45.0))
    traits = _patient_traits(rng, age0, sex, bmi)
    htn = rng.random() < np.clip(0.1 + 0.008 * (age0 - 30), 0.05, 0.7) or phen == "lvh"
    ckd = phen == "hyperk" or rng.random() < np.clip(0.02 + 0.003 * (age0 - 40), 0.01, 0.2)
    anaemia = phen == "tachy" and rng.random() < 0.5
    hypoxia = phen == "tachy" and not anaemia and rng.random() < 0.5
    chronic: dict[str, float] = {}
    sev = _severity(rng)
    mapping = {"1avb": "1AVB", "lbbb": "CLBBB", "rbbb": "CRBBB", "irbbb": "IRBBB", "lafb": "LAFB",
               "lvh": "LVH", "lae": "LAO/LAE", "lqts": "LNGQT", "ndt": "NDT"}
    if phen in mapping:
        chronic[mapping[phen]] = sev
    if phen == "rbbb" and rng.random() < 0.25:
        chronic["LAFB"] = _severity(rng)
    if phen == "lvh" and rng.random() < 0.3:
        chronic["LAO/LAE"] = _severity(rng)
    # comorbidities by age
    old = age0 > 55
    for code, p in (("1AVB", 0.025), ("LVH", 0.04 if htn else 0.0), ("LAFB", 0.02),
                    ("IRBBB", 0.02)):
        if old and code not in chronic and rng.random() < p:
            chronic[code] = _severity(rng)
    mi_code = None
    mi_at = None
    if phen in ("imi", "ami"):
        mi_code = "IMI" if phen == "imi" else ("AMI" if rng.random() < 0.5 else "ASMI")
        mi_at = 0 if rng.random() < 0.5 else int(rng.integers(0, n_rec))
        mi_sev = sev
    isc_code = {0: "ISC_", 1: "ISCAL", 2: "ISCIN"}[int(rng.integers(0, 3))]
    af_perm = phen == "af" and rng.random() < 0.6
    af_old = old and phen not in ("af",) and rng.random() < 0.03
    t_day = float(rng.uniform(0, 365 * 12))
    ca_dir = -1 if rng.random() < 0.6 else 1
    hr_base = traits["hr"]
    if phen == "athlete":
        hr_base = rng.uniform(42, 56)
        traits["rsa"] *= 1.8
    if phen == "tachy":
        hr_base = rng.uniform(96, 135)
    if phen == "af" or af_old:
        af_rate = rng.uniform(60, 135)
    else:
        af_rate = 0.0
    plans = []
    t_first = t_day
    af_records = set()
    if phen == "af" and not af_perm:
        af_records = {i for i in range(n_rec) if rng.random() < 0.5} or {int(rng.integers(0, n_rec))}
    elif af_perm:
        af_records = set(range(n_rec))
    elif af_old and n_rec > 1:
        af_records = {n_rec - 1}
    isc_records = set()
    if phen == "ischaemia":
        isc_records = {i for i in range(n_rec) if rng.random() < 0.75} or {0}
    for v in range(n_rec):
        rr = np.random.default_rng([seed, 12, pid, v])
        t_day += float(rr.uniform(1, 700)) if v else 0.0
        age = age0 + (t_day - t_first) / 365.25
        conds = dict(chronic)
        for c in conds:
            conds[c] = float(np.clip(conds[c] + rr.normal(0, 0.04), 0.02, 1.0))
        acute = False
        if mi_code is not None and v >= mi_at:
            conds[mi_code] = float(np.clip(mi_sev + rr.normal(0, 0.04), 0.02, 1.0))
            acute = v == mi_at and rr.random() < 0.4
            if v > mi_at and "CLBBB" not in conds and rr.random() < 0.15:
                conds["1AVB"] = _severity(rr)
        if v in isc_records or (phen not in ("ischaemia",) and old and rr.random() < 0.04):
            conds[isc_code] = _severity(rr)
        if phen == "lvh" and rr.random() < 0.1:
            conds["ISC_"] = _severity(rr)
        if acute:  # the injury current of an acute infarct, not ischaemic depression, shapes ST
            for code in ("ISC_", "ISCAL", "ISCIN"):
                conds.pop(code, None)
        rhythm = "AFIB" if v in af_records else "sinus"
        # laboratory values (true)
        labs = {}
        labs["creatinine"] = (rr.uniform(160, 520) if ckd else
                              rr.normal(88 if sex == 0 else 70, 13) * (1 + 0.004 * max(age - 50, 0)))
        k = rr.normal(4.2, 0.33) + (0.6 if ckd else 0.0) - (0.25 if htn and rr.random() < 0.3 else 0)
        if phen == "hyperk" and rr.random() < 0.8:
            k = rr.uniform(6.0, 7.6)
        if phen == "hypok" and rr.random() < 0.8:
            k = rr.uniform(2.4, 3.1)
        labs["potassium"] = float(np.clip(k, 2.2, 8.0))
        ca = rr.normal(2.36, 0.08) - (0.12 if ckd else 0.0)
        if phen == "calcium" and rr.random() < 0.8:
            ca = rr.uniform(1.55, 1.9) if ca_dir < 0 else rr.uniform(2.85, 3.3)
        labs["calcium"] = float(np.clip(ca, 1.4, 3.5))
        mg = rr.normal(0.86, 0.07) - (0.15 if phen == "hypok" else 0.0)
        labs["magnesium"] = float(np.clip(mg, 0.35, 1.6))
        hb = rr.normal(148 if sex == 0 else 134, 10) - (18 if ckd else 0)
        if anaemia:
            hb = rr.uniform(72, 102)
        labs["haemoglobin"] = float(np.clip(hb, 55, 195))
        spo2 = min(100.0, rr.normal(97.4, 1.2))
        if hypoxia:
            spo2 = rr.uniform(84, 92)
        labs["spo2"] = float(np.clip(spo2, 75, 100))
        sbp = rr.normal(124 + 0.45 * (age - 50) + (24 if htn else 0), 13)
        labs["sbp"] = float(np.clip(sbp, 85, 230))
        labs["dbp"] = float(np.clip(0.55 * sbp + rr.normal(10, 7), 45, 130))
        trop = np.exp(rr.normal(np.log(5.0) + 0.015 * (age - 50), 0.45))
        trop *= 3.0 if ckd else 1.0
        if mi_code is not None and v >= mi_at:
            trop *= rr.uniform(40, 900) if acute else rr.uniform(1.2, 3.0)
        if any(c in conds for c in ("ISC_", "ISCAL", "ISCIN")):
            trop *= rr.uniform(1.5, 6.0)
        if "LVH" in conds:
            trop *= 1.5
        labs["troponin"] = float(np.clip(trop, 3.0, 50000.0))
        bnp = np.exp(rr.normal(np.log(55.0) + 0.035 * (age - 50) + 0.3 * sex, 0.6))
        for code, f in (("LVH", (3, 15)), ("CLBBB", (3, 10)), ("IMI", (2, 6)), ("AMI", (3, 8)),
                        ("ASMI", (3, 8))):
            if code in conds:
                bnp *= rr.uniform(*f)
        if rhythm == "AFIB":
            bnp *= rr.uniform(3, 8)
        if ckd:
            bnp *= rr.uniform(2, 6)
        if acute:
            bnp *= rr.uniform(2, 4)
        labs["nt_probnp"] = float(np.clip(bnp, 5.0, 35000.0))
        # heart rate: the patient's rate, the day, and what raises it
        if rhythm == "AFIB":
            hr = float(np.clip(af_rate * np.exp(rr.normal(0, 0.12)), 50, 150))
        else:
            hr = hr_base * np.exp(rr.normal(0, 0.05))
            hr += max(0.0, 110 - labs["haemoglobin"]) * 0.45 + max(0.0, 93 - labs["spo2"]) * 2.2
            if acute:
                hr += rr.uniform(0, 15)
            if phen == "normal" and rr.random() < 0.12:   # occasional slow / fast resting rate
                hr = rr.uniform(46, 58) if rr.random() < 0.5 else rr.uniform(102, 125)
            hr = float(np.clip(hr, 38, 150))
        rsa = traits["rsa"] * (1.0 if rhythm == "sinus" else 0.0)
        if rhythm == "sinus" and age < 40 and rr.random() < 0.15:
            rsa = rr.uniform(0.08, 0.14)
        # noise levels for this record
        nz = {
            "baseline": float(np.exp(rr.normal(np.log(0.05), 0.7))) * noise["baseline"],
            "muscle": float(np.exp(rr.normal(np.log(0.006), 0.6))) * noise["muscle"],
            "mains": (float(rr.uniform(0.005, 0.04)) if rr.random() < 0.3 else 0.0) * noise["mains"],
            "bursts": int(rr.random() < 0.15) * int(rr.integers(1, 3)),
        }
        if phen == "tachy" and rr.random() < 0.3:
            nz["muscle"] *= 2.5
        plans.append({
            "pid": pid, "visit": v, "phenotype": phen, "t_day": t_day,
            "plan": _Plan(seed=(seed, 13, pid, v), age=float(age), sex=sex,
                          height=float(height), weight=float(bmi * (height / 100.0) ** 2),
                          traits=traits, conds=conds, rhythm=rhythm, hr=hr, rsa=float(rsa),
                          acute=bool(acute), labs=labs, noise=nz,
                          af_amp=float(rr.uniform(0.02, 0.08))),
            "norm_lik": 100.0 if rr.random() < 0.8 else 80.0,
            "missing": {c: bool(rr.random() < p) for c, p in LAB_MISSING.items()},
            "hw_missing": (bool(rr.random() < 0.08), bool(rr.random() < 0.04)),
            "nurse": float(rr.integers(0, 12)), "site": float(rr.integers(0, 6)),
            "hour": int(rr.integers(7, 19)), "minute": int(rr.integers(0, 60)),
            "second": int(rr.integers(0, 60)),
        })
    return plans


def _cohort_plan(n_records: int, seed: int, noise: dict) -> list[dict]:
    rng = np.random.default_rng([seed, 10])
    sizes = []
    while sum(sizes) < n_records:
        sizes.append(int(rng.choice([1, 2, 3, 4, 5], p=[0.25, 0.3, 0.2, 0.15, 0.1])))
    sizes[-1] -= sum(sizes) - n_records
    phen = _allocate(len(sizes), rng)
    recs = []
    for pid, (k, ph) in enumerate(zip(sizes, phen)):
        recs.extend(_patient_plans(pid, ph, k, seed, noise))
    recs.sort(key=lambda r: (r["t_day"], r["pid"], r["visit"]))
    pids = np.array([r["pid"] for r in recs])
    # PTB-XL-like patient numbers, stable under the seed
    id_rng = np.random.default_rng([seed, 14])
    numbers = id_rng.choice(np.arange(1, 30000), size=len(sizes), replace=False)
    for i, r in enumerate(recs):
        r["ecg_id"] = i + 1
        r["patient_id"] = float(numbers[pids[i]])
    return recs


def _folds(recs: list[dict], superclasses: list[set], seed: int) -> np.ndarray:
    """Patient-wise folds 1–10, stratified by diagnostic superclass (greedy, rarest first)."""
    rng = np.random.default_rng([seed, 15])
    pat: dict[int, list[int]] = {}
    for i, r in enumerate(recs):
        pat.setdefault(r["pid"], []).append(i)
    classes = list(SUPERCLASSES)
    plab = {p: set().union(*(superclasses[i] for i in idx)) or {"NORM"} for p, idx in pat.items()}
    freq = {c: sum(c in s for s in plab.values()) for c in classes}
    order = sorted(pat, key=lambda p: (min(freq[c] for c in plab[p]), -len(pat[p]), rng.random()))
    count = np.zeros((10, len(classes)))
    size = np.zeros(10)
    fold_of = {}
    for p in order:
        rare = min(plab[p], key=lambda c: freq[c])
        ci = classes.index(rare)
        score = count[:, ci] * 1000 + size + rng.random(10) * 0.1
        f = int(np.argmin(score))
        fold_of[p] = f + 1
        for c in plab[p]:
            count[f, classes.index(c)] += len(pat[p])
        size[f] += len(pat[p])
    return np.array([fold_of[r["pid"]] for r in recs])


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def _digital(eight_mv: np.ndarray) -> np.ndarray:
    """8 leads in mV → 12 leads as int16 adu (1 µV); derived leads from the digital I and II."""
    d8 = np.clip(np.rint(eight_mv * 1000.0), -32767, 32767).astype(np.int32)
    i, ii = d8[:, 0], d8[:, 1]
    limb = np.column_stack([i, ii, ii - i, np.rint(-(i + ii) / 2.0), np.rint(i - ii / 2.0),
                            np.rint(ii - i / 2.0)])
    d = np.concatenate([limb, d8[:, 2:]], axis=1)
    return np.clip(d, -32767, 32767).astype("<i2")


def _write_wfdb(base: Path, d: np.ndarray, fs: int) -> None:
    """Write ``base``.hea/.dat (format 16, gain 1000/mV) as PTB-XL and wfdb.wrsamp do."""
    name = base.name
    n = d.shape[0]
    checks = d.astype(np.int64).sum(axis=0) % 65536
    lines = [f"{name} 12 {fs} {n}"]
    for j, lead in enumerate(HEADER_LEADS):
        lines.append(f"{name}.dat 16 1000.0(0)/mV 16 0 {int(d[0, j])} {int(checks[j])} 0 {lead}")
    base.with_name(name + ".hea").write_text("\n".join(lines) + "\n")
    base.with_name(name + ".dat").write_bytes(d.tobytes())


def _record_paths(ecg_id: int) -> tuple[str, str]:
    folder = f"{(ecg_id // 1000) * 1000:05d}"
    return (f"records100/{folder}/{ecg_id:05d}_lr", f"records500/{folder}/{ecg_id:05d}_hr")


def _leads_text(levels: np.ndarray, thr: float) -> str | float:
    bad = [HEADER_LEADS[i] for i in np.where(levels > thr)[0]]
    if not bad:
        return np.nan
    return "alles" if len(bad) == 12 else ", " + ",".join(bad)


def _noise_columns(stats: dict | None, plan: _Plan) -> dict:
    """PTB-XL's noise columns: the leads with strong drift (> 0.5 mV) or static noise."""
    if stats is None:
        return {"baseline_drift": np.nan, "static_noise": np.nan, "burst_noise": np.nan}
    return {"baseline_drift": _leads_text(stats["drift"], 0.8),
            "static_noise": _leads_text(stats["static"], 0.03),
            "burst_noise": ("alles" if plan.noise.get("bursts", 0) and plan.noise["muscle"] > 0.004
                            else np.nan)}


def _write_gzip_csv(df: pd.DataFrame, path: Path) -> None:
    """CSV through gzip with a fixed header (no time stamp, no name) so files are reproducible."""
    text = df.to_csv(index=False).encode()
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                compresslevel=6) as gz:
        gz.write(text)


def _make_record(item: dict, out: Path, rates: tuple) -> tuple[dict, dict, np.ndarray, dict]:
    plan: _Plan = item["plan"]
    sim = _simulate(plan)
    meas = sim["meas"]
    codes, report, axis, extra = _labels(plan, meas, item["norm_lik"])
    x = sim["clean8"] if sim["noise8"] is None else sim["clean8"] + sim["noise8"]
    ecg_id = item["ecg_id"]
    lr, hr = _record_paths(ecg_id)
    if 500 in rates:
        (out / hr).parent.mkdir(parents=True, exist_ok=True)
        _write_wfdb(out / hr, _digital(x), 500)
    if 100 in rates:
        (out / lr).parent.mkdir(parents=True, exist_ok=True)
        x100 = sps.resample_poly(x, 1, 5, axis=0, padtype="line")
        _write_wfdb(out / lr, _digital(x100), 100)
    # fiducials block: (1 + 12) rows per beat
    g, lead = sim["global"], sim["lead"]
    nb = g["qrs_on"].size
    block = np.empty((nb * 13, 11), dtype=np.int64)
    block[:, 0] = ecg_id
    block[:, 1] = np.repeat(np.arange(13), nb)            # 0 = all, 1..12 = leads
    block[:, 2] = np.tile(np.arange(nb), 13)
    for j, col in enumerate(FIDUCIAL_COLUMNS):
        if col in lead:
            vals = np.concatenate([g[col][None, :], lead[col].T], axis=0)
            if col == "p_peak":
                vals = np.where(g["p_on"][None, :] >= 0, vals, -1)
            if col == "t_peak":
                vals = np.where(g["t_off"][None, :] >= 0, vals, -1)
            block[:, 3 + j] = vals.ravel()
        else:
            block[:, 3 + j] = np.tile(g[col], 13)
    date = (pd.Timestamp("1989-01-02") + pd.Timedelta(days=int(item["t_day"]))).strftime("%Y-%m-%d")
    stadium = np.nan
    if any(c in codes for c in ("IMI", "AMI", "ASMI")):
        stadium = "Stadium I" if plan.acute else "Stadium III"
    hmiss, wmiss = item["hw_missing"]
    row = {
        "ecg_id": ecg_id, "patient_id": item["patient_id"], "age": float(round(plan.age)),
        "sex": plan.sex, "height": np.nan if hmiss else float(round(plan.height)),
        "weight": np.nan if wmiss else float(round(plan.weight)), "nurse": item["nurse"],
        "site": item["site"], "device": "ecgkit-synthetic",
        "recording_date": f"{date} {item['hour']:02d}:{item['minute']:02d}:{item['second']:02d}",
        "report": report, "scp_codes": str(codes), "heart_axis": axis,
        "infarction_stadium1": stadium, "infarction_stadium2": np.nan, "validated_by": 1.0,
        "second_opinion": False, "initial_autogenerated_report": False,
        "validated_by_human": True, **_noise_columns(sim["noise_stats"], plan),
        "electrodes_problems": np.nan, "extra_beats": np.nan, "pacemaker": np.nan,
        "strat_fold": 0,
        "filename_lr": lr if 100 in rates else np.nan, "filename_hr": hr if 500 in rates else np.nan,
    }
    labs = {"ecg_id": ecg_id}
    for col in LAB_UNITS:
        v = meas["heart_rate"] + np.random.default_rng([*plan.seed, 7]).normal(0, 1.5) \
            if col == "heart_rate" else plan.labs[col]
        labs[col] = np.nan if item["missing"][col] else float(round(v, _LAB_DECIMALS[col]))
    truth = {"ecg_id": ecg_id, "patient_id": item["patient_id"], "phenotype": item["phenotype"],
             "rhythm": extra["rhythm"], **{k: round(v, 4) if isinstance(v, float) else v
                                           for k, v in meas.items()},
             "acute_mi": plan.acute, "baseline_mv": round(plan.noise["baseline"], 5),
             "muscle_mv": round(plan.noise["muscle"], 5), "mains_mv": round(plan.noise["mains"], 5)}
    return row, labs, block, truth


_LAB_DECIMALS = {"potassium": 1, "calcium": 2, "magnesium": 2, "troponin": 0, "nt_probnp": 0,
                 "creatinine": 0, "haemoglobin": 0, "heart_rate": 0, "sbp": 0, "dbp": 0, "spo2": 0}
_DB_COLUMNS = ["ecg_id", "patient_id", "age", "sex", "height", "weight", "nurse", "site", "device",
               "recording_date", "report", "scp_codes", "heart_axis", "infarction_stadium1",
               "infarction_stadium2", "validated_by", "second_opinion",
               "initial_autogenerated_report", "validated_by_human", "baseline_drift",
               "static_noise", "burst_noise", "electrodes_problems", "extra_beats", "pacemaker",
               "strat_fold", "filename_lr", "filename_hr"]


def _noise_levels(noise: float, baseline, mains, muscle) -> dict:
    return {"baseline": noise if baseline is None else baseline,
            "mains": noise if mains is None else mains,
            "muscle": noise if muscle is None else muscle}


def _work(args):
    items, out, rates = args
    return [_make_record(it, Path(out), rates) for it in items]


def make_synthetic_ptbxl(out_dir: str | os.PathLike, n_records: int = 1000, seed: int = 0,
                         noise: float = 1.0, rates: tuple = (100, 500), progress: bool = True, *,
                         baseline: float | None = None, mains: float | None = None,
                         muscle: float | None = None, workers: int | None = None) -> Path:
    """Write a synthetic cohort in PTB-XL layout to ``out_dir`` and return it.

    ``noise`` scales every noise source (0 = clean signals); ``baseline``, ``mains`` and
    ``muscle`` override the scale of one source. Output is byte-identical for the same arguments
    (``workers``, the number of processes, does not change it; default: 2 where there are
    2 CPUs and at least 400 records, else 1).
    """
    if n_records < 1:
        raise ValueError("n_records must be at least 1")
    if int(seed) < 0:
        raise ValueError("seed must be ≥ 0")
    rates = tuple(sorted({int(r) for r in rates}))
    if not set(rates) <= {100, 500} or not rates:
        raise ValueError(f"rates must be a non-empty subset of (100, 500), got {rates}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    levels = _noise_levels(noise, baseline, mains, muscle)
    if any(v < 0 for v in levels.values()):
        raise ValueError("noise levels must be ≥ 0")
    recs = _cohort_plan(n_records, seed, levels)
    chunk = 50
    jobs = [(recs[i:i + chunk], str(out), rates) for i in range(0, len(recs), chunk)]
    if workers is None:  # processes pay off for big cohorts only (each one imports ecgkit)
        workers = min(2, os.cpu_count() or 1) if len(recs) >= 400 else 1
    workers = max(1, int(workers))
    results = []
    bar = _progress(len(recs), progress)
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp
        # "spawn": safe even when the caller has threads running (torch, a notebook kernel)
        with mp.get_context("spawn").Pool(workers) as pool:
            for res in pool.imap(_work, jobs):
                results.extend(res)
                bar.update(len(res))
    else:
        for job in jobs:
            res = _work(job)
            results.extend(res)
            bar.update(len(res))
    bar.close()
    rows, labs, blocks, truth = zip(*results)
    db = pd.DataFrame(list(rows))[_DB_COLUMNS]
    supers = []
    for s in db["scp_codes"]:
        codes = ast.literal_eval(s)
        supers.append({CONDITIONS[c].superclass for c in codes if CONDITIONS[c].superclass})
    db["strat_fold"] = _folds(recs, supers, seed)
    db.to_csv(out / "ptbxl_database.csv", index=False)
    scp_statements().to_csv(out / "scp_statements.csv")
    pd.DataFrame(list(labs)).to_csv(out / "labs.csv", index=False)
    gt = pd.DataFrame(list(truth))
    gt.insert(2, "strat_fold", db["strat_fold"].values)
    gt.to_csv(out / "ground_truth.csv", index=False)
    fid = np.concatenate(blocks)
    names = np.array(["all", *LEADS])
    fdf = pd.DataFrame(fid[:, 3:], columns=list(FIDUCIAL_COLUMNS))
    fdf.insert(0, "beat", fid[:, 2])
    fdf.insert(0, "lead", names[fid[:, 1]])
    fdf.insert(0, "ecg_id", fid[:, 0])
    _write_gzip_csv(fdf, out / "fiducials.csv.gz")
    meta = {"generator": "ecgkit.synthetic", "version": GENERATOR_VERSION,
            "n_records": n_records, "n_patients": int(db["patient_id"].nunique()), "seed": seed,
            "noise": noise, "levels": levels, "rates": list(rates), "duration_s": DURATION}
    (out / "synthetic.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    (out / "README.md").write_text(_readme(meta))
    return out


def _progress(total: int, enabled: bool):
    try:
        from tqdm import tqdm
        return tqdm(total=total, disable=not enabled, desc="synthetic ECGs", unit="rec")
    except ImportError:  # pragma: no cover
        class _Null:
            def update(self, *_):
                pass

            def close(self):
                pass
        return _Null()


def _readme(meta: dict) -> str:
    doc = __doc__.split("Files written by", 1)[1]
    return (f"# Synthetic PTB-XL cohort (ecgkit.synthetic, generator version {meta['version']})\n\n"
            f"{meta['n_records']} records of {meta['n_patients']} synthetic patients, seed "
            f"{meta['seed']}, noise scale {meta['noise']}. Not real patients: every signal comes "
            "from a dipole model of the heart (see the ecgkit.synthetic module).\n\n"
            "Files written by" + doc + "\nLaboratory units: "
            + ", ".join(f"{k} [{v}]" for k, v in LAB_UNITS.items()) + ".\n")


def synthetic_cohort(n_records: int = 1000, seed: int = 0, noise: float = 1.0,
                     progress: bool = True) -> Path:
    """The cohort for these arguments, generated once under the ecgkit cache and reused.

    It is written to a temporary folder next to its place and renamed into place only when
    complete, so an interrupted run never leaves half a cohort behind.
    """
    key = f"v{GENERATOR_VERSION}-n{int(n_records)}-seed{int(seed)}-noise{float(noise):g}"
    root = cache_dir("synthetic")
    final = root / key
    if (final / "synthetic.json").is_file():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        make_synthetic_ptbxl(tmp, n_records=n_records, seed=seed, noise=noise, progress=progress)
        if final.exists() and not (final / "synthetic.json").is_file():
            shutil.rmtree(final, ignore_errors=True)  # an empty or partial folder: not a cohort
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / "synthetic.json").is_file():  # lost a race with nobody: re-raise
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# --------------------------------------------------------------------------------------------
# One record on demand
# --------------------------------------------------------------------------------------------

_RHYTHM_HR = {"SBRAD": 48.0, "STACH": 118.0}


def simulate_ecg(conditions=("NORM",), fs: float = 500, duration: float = 10.0, age: float = 55.0,
                 sex: int = 0, height: float | None = None, weight: float | None = None,
                 labs: dict | None = None, heart_rate: float | None = None, severity: float = 0.6,
                 acute: bool = False, noise: float = 1.0, seed: int = 0, *,
                 baseline: float | None = None, mains: float | None = None,
                 muscle: float | None = None):
    """One synthetic 12-lead record: ``(signal, fiducials)``.

    ``conditions``: SCP codes from :data:`CONDITIONS` (a string or a list; rhythm codes SBRAD,
    STACH, SARRH, AFIB choose the rhythm; NORM/SR mean none). ``labs`` overrides laboratory
    values (keys of :data:`LAB_UNITS`, e.g. ``{"potassium": 7.0}``). ``severity`` (0–1) scales
    how marked the conditions are. ``sex``: 0 male, 1 female (PTB-XL coding).

    ``signal``: samples × 12 float32 mV in :data:`ecgkit.data.wfdb_io.LEADS` order.
    ``noise`` scales the typical noise of the cohort (0.05 mV baseline wander, 0.006 mV muscle
    noise, 0.01 mV mains hum at 50 Hz); ``baseline``, ``mains``, ``muscle`` override one scale.

    ``fiducials``: a DataFrame with columns ``lead, beat`` and :data:`FIDUCIAL_COLUMNS` in samples
    at ``fs`` (see the module docstring); ``fiducials.attrs`` holds ``scp_codes``, ``report``,
    ``labs`` and ``measurements``. The same ``seed`` gives the same heart, whatever the labs or
    noise, so records that differ only in one factor can be compared.
    """
    if isinstance(conditions, str):
        conditions = [conditions]
    codes = [str(c).strip() for c in conditions]
    unknown = [c for c in codes if c not in CONDITIONS]
    if unknown:
        raise ValueError(f"unknown condition(s) {unknown}; supported: {sorted(CONDITIONS)}")
    for group in _EXCLUSIVE:
        both = [c for c in codes if c in group]
        if len(both) > 1:
            raise ValueError(f"conditions {both} cannot be combined")
    rhythms = [c for c in codes if CONDITIONS[c].kind == "rhythm"]
    if len(set(rhythms)) > 1:
        raise ValueError(f"one rhythm at a time, got {rhythms}")
    derived = {"EL", "LVOLT"}
    if derived & set(codes):
        raise ValueError("EL and LVOLT follow from labs and voltage; set labs or body size instead")
    rng = np.random.default_rng([int(seed), 21])
    h = float(height if height is not None else (176.0 if sex == 0 else 163.5))
    w = float(weight if weight is not None else 26.0 * (h / 100.0) ** 2)
    bmi = w / (h / 100.0) ** 2
    traits = _patient_traits(rng, float(age), int(sex), bmi)
    structural = {c: float(severity) for c in codes
                  if CONDITIONS[c].kind == "diagnostic" and c != "NORM"}
    rhythm = "AFIB" if "AFIB" in codes else "sinus"
    hr = heart_rate
    if hr is None:
        hr = next((_RHYTHM_HR[c] for c in codes if c in _RHYTHM_HR), None)
    if hr is None:
        hr = 85.0 if rhythm == "AFIB" else traits["hr"]
    true_labs = dict(_NORMAL_LABS)
    true_labs.update(labs or {})
    rsa = 0.11 if "SARRH" in codes else traits["rsa"]
    lv = _noise_levels(noise, baseline, mains, muscle)
    nz = {"baseline": 0.05 * lv["baseline"], "muscle": 0.006 * lv["muscle"],
          "mains": 0.01 * lv["mains"], "bursts": 0}
    plan = _Plan(seed=(int(seed), 22), age=float(age), sex=int(sex), height=h, weight=w,
                 traits=traits, conds=structural, rhythm=rhythm, hr=float(hr), rsa=float(rsa),
                 acute=bool(acute), labs=true_labs, noise=nz, af_amp=0.05)
    sim = _simulate(plan, duration=duration, fs=FS)
    codes_out, report, axis, _ = _labels(plan, sim["meas"])
    x = sim["clean8"] if sim["noise8"] is None else sim["clean8"] + sim["noise8"]
    sig12 = _derive12(x)
    scale = fs / FS
    if fs != FS:
        from fractions import Fraction
        fr = Fraction(float(fs) / FS).limit_denominator(1000)
        sig12 = sps.resample_poly(sig12, fr.numerator, fr.denominator, axis=0, padtype="line")
    g, lead = sim["global"], sim["lead"]
    frames = []
    nb = g["qrs_on"].size
    for li, name in enumerate(["all", *LEADS]):
        d = {"lead": name, "beat": np.arange(nb)}
        for col in FIDUCIAL_COLUMNS:
            v = g[col] if (li == 0 or col not in lead) else lead[col][:, li - 1]
            if col == "p_peak":
                v = np.where(g["p_on"] >= 0, v, -1)
            if col == "t_peak":
                v = np.where(g["t_off"] >= 0, v, -1)
            d[col] = np.where(v >= 0, np.rint(v * scale), -1).astype(np.int64)
        frames.append(pd.DataFrame(d))
    fid = pd.concat(frames, ignore_index=True)
    fid.attrs.update({"scp_codes": codes_out, "report": report, "heart_axis": axis,
                      "labs": true_labs, "measurements": sim["meas"], "fs": float(fs)})
    return sig12.astype(np.float32), fid


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    """``ecgkit synth``: write a synthetic PTB-XL cohort."""
    ap = argparse.ArgumentParser(prog="ecgkit synth", description=main.__doc__)
    ap.add_argument("--out", type=Path, default=None,
                    help="folder to write (default: the cached cohort under ECGKIT_CACHE)")
    ap.add_argument("--n", type=int, default=1000, help="number of records (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=1.0, help="noise scale, 0 = clean (default 1)")
    ap.add_argument("--rates", type=int, nargs="+", default=[100, 500], choices=[100, 500])
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    if a.out is None:
        path = synthetic_cohort(a.n, a.seed, a.noise, progress=not a.no_progress)
    else:
        path = make_synthetic_ptbxl(a.out, a.n, a.seed, a.noise, rates=tuple(a.rates),
                                    progress=not a.no_progress, workers=a.workers)
    print(f"{a.n} synthetic records in {path} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
