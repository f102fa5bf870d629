"""The conditions and features the book reasons about (ALFRED's rule module and feature set).

One list for the whole project: the rule module evaluates these conditions, the feature
extractor measures these features, and the knowledge corpus has one expert card for each.
``superclasses`` are the PTB-XL superclasses a positive finding points to (empty for rhythm
statements and quality warnings, which PTB-XL keeps outside the diagnostic superclasses).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..vocabulary import LEADS  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class Condition:
    key: str
    name: str
    category: str  # rhythm, conduction, hypertrophy, ischaemia, axis, voltage, quality
    superclasses: tuple[str, ...]
    scp_codes: tuple[str, ...]


@dataclass(frozen=True)
class Feature:
    key: str
    name: str
    unit: str
    scope: str  # "lead" (measured in each of the 12 leads) or "global"
    description: str


def _c(key, name, category, superclasses="", scp=""):
    return Condition(key, name, category, tuple(superclasses.split()), tuple(scp.split()))


CONDITIONS: tuple[Condition, ...] = (
    # rhythm
    _c("sinus_rhythm", "sinus rhythm", "rhythm", "", "SR"),
    _c("sinus_bradycardia", "sinus bradycardia", "rhythm", "", "SBRAD"),
    _c("sinus_tachycardia", "sinus tachycardia", "rhythm", "", "STACH"),
    _c("sinus_arrhythmia", "sinus arrhythmia", "rhythm", "", "SARRH"),
    _c("atrial_fibrillation", "atrial fibrillation", "rhythm", "", "AFIB"),
    _c("atrial_flutter", "atrial flutter", "rhythm", "", "AFLT"),
    _c("irregular_rhythm", "irregular rhythm", "rhythm", "", "SVARR"),
    _c("supraventricular_tachycardia", "supraventricular tachycardia", "rhythm", "", "SVTAC PSVT"),
    _c("premature_complexes", "premature complexes", "rhythm", "", "PRC(S) PAC PVC"),
    _c("paced_rhythm", "paced rhythm", "rhythm", "", "PACE"),
    # conduction
    _c("first_degree_av_block", "first-degree AV block", "conduction", "CD", "1AVB LPR"),
    _c("short_pr", "short PR interval", "conduction", "CD", ""),
    _c("wpw_pattern", "Wolff-Parkinson-White pattern", "conduction", "CD", "WPW"),
    _c("complete_lbbb", "complete left bundle branch block", "conduction", "CD", "CLBBB"),
    _c("complete_rbbb", "complete right bundle branch block", "conduction", "CD", "CRBBB"),
    _c("incomplete_lbbb", "incomplete left bundle branch block", "conduction", "CD", "ILBBB"),
    _c("incomplete_rbbb", "incomplete right bundle branch block", "conduction", "CD", "IRBBB"),
    _c("left_anterior_fascicular_block", "left anterior fascicular block", "conduction", "CD", "LAFB"),
    _c("left_posterior_fascicular_block", "left posterior fascicular block", "conduction", "CD", "LPFB"),
    _c("nonspecific_ivcd", "non-specific intraventricular conduction delay", "conduction", "CD", "IVCD"),
    _c("long_qt", "long QT interval", "conduction", "STTC", "LNGQT"),
    _c("short_qt", "short QT interval", "conduction", "STTC", ""),
    # hypertrophy and enlargement
    _c("lvh_sokolow_lyon", "left ventricular hypertrophy (Sokolow-Lyon)", "hypertrophy", "HYP", "LVH VCLVH"),
    _c("lvh_cornell", "left ventricular hypertrophy (Cornell)", "hypertrophy", "HYP", "LVH VCLVH"),
    _c("rvh", "right ventricular hypertrophy", "hypertrophy", "HYP", "RVH"),
    _c("left_atrial_enlargement", "left atrial enlargement", "hypertrophy", "HYP", "LAO/LAE"),
    _c("right_atrial_enlargement", "right atrial enlargement", "hypertrophy", "HYP", "RAO/RAE"),
    # ischaemia and infarction
    _c("q_waves_inferior", "pathological Q waves, inferior leads", "ischaemia", "MI", "IMI ILMI IPMI IPLMI"),
    _c("q_waves_anterior", "pathological Q waves, anterior leads", "ischaemia", "MI", "AMI ASMI"),
    _c("q_waves_lateral", "pathological Q waves, lateral leads", "ischaemia", "MI", "LMI ALMI"),
    _c("st_elevation_inferior", "ST elevation, inferior leads", "ischaemia", "MI", "INJIN INJIL"),
    _c("st_elevation_anterior", "ST elevation, anterior leads", "ischaemia", "MI", "INJAS INJAL STE_"),
    _c("st_elevation_lateral", "ST elevation, lateral leads", "ischaemia", "MI", "INJLA STE_"),
    _c("st_depression", "ST depression", "ischaemia", "STTC", "STD_ NST_ ISC_"),
    _c("t_wave_inversion", "T-wave inversion", "ischaemia", "STTC", "INVT ISCAL ISCAN ISCAS ISCIL ISCIN ISCLA"),
    _c("low_t_waves", "low or flat T waves", "ischaemia", "STTC", "LOWT NT_ NDT"),
    _c("poor_r_wave_progression", "poor R-wave progression", "ischaemia", "MI", ""),
    # axis and voltage
    _c("left_axis_deviation", "left axis deviation", "axis", "CD", ""),
    _c("right_axis_deviation", "right axis deviation", "axis", "HYP", ""),
    _c("low_qrs_voltage", "low QRS voltage", "voltage", "", "LVOLT"),
    _c("high_qrs_voltage", "high QRS voltage", "voltage", "HYP", "HVOLT"),
    # quality warnings
    _c("noisy_signal", "noisy recording", "quality", "", ""),
    _c("baseline_wander", "baseline wander", "quality", "", ""),
    _c("suspected_lead_reversal", "suspected limb lead reversal", "quality", "", ""),
    _c("flat_lead", "flat or disconnected lead", "quality", "", ""),
)


def _f(key, name, unit, scope, description):
    return Feature(key, name, unit, scope, description)


LEAD_FEATURES: tuple[Feature, ...] = (
    _f("p_amplitude", "P-wave amplitude", "mV", "lead", "peak P-wave deflection from the isoelectric line (signed)"),
    _f("p_duration", "P-wave duration", "ms", "lead", "P onset to P offset"),
    _f("p_terminal_negative", "P-wave terminal negativity", "mV·ms", "lead", "area of the negative terminal part of the P wave (P terminal force in V1)"),
    _f("q_amplitude", "Q-wave amplitude", "mV", "lead", "depth of the first negative QRS deflection before R"),
    _f("q_duration", "Q-wave duration", "ms", "lead", "width of the Q wave"),
    _f("r_amplitude", "R-wave amplitude", "mV", "lead", "height of the first positive QRS deflection"),
    _f("r_duration", "R-wave duration", "ms", "lead", "width of the R wave"),
    _f("r_prime_amplitude", "R' amplitude", "mV", "lead", "height of a second positive QRS deflection (0 when absent)"),
    _f("s_amplitude", "S-wave amplitude", "mV", "lead", "depth of the negative deflection after R"),
    _f("s_duration", "S-wave duration", "ms", "lead", "width of the S wave"),
    _f("r_peak_time", "R-peak time", "ms", "lead", "QRS onset to the R peak (intrinsicoid deflection)"),
    _f("qrs_amplitude", "QRS peak-to-peak amplitude", "mV", "lead", "maximum minus minimum within the QRS"),
    _f("qrs_area", "net QRS area", "mV·ms", "lead", "signed area of the QRS complex"),
    _f("qrs_duration_lead", "QRS duration in the lead", "ms", "lead", "QRS onset to offset in this lead"),
    _f("qrs_notch", "QRS notching", "count", "lead", "extra direction changes within the QRS (fragmentation, notched R)"),
    _f("r_s_ratio", "R/S ratio", "ratio", "lead", "R amplitude divided by S depth"),
    _f("q_r_ratio", "Q/R ratio", "ratio", "lead", "Q depth divided by R height"),
    _f("st_j", "ST level at the J point", "mV", "lead", "level at the QRS offset relative to the PR segment"),
    _f("st_j60", "ST level at J+60 ms", "mV", "lead", "level 60 ms after the J point relative to the PR segment"),
    _f("st_slope", "ST slope", "mV/s", "lead", "slope of the ST segment between J and J+80 ms"),
    _f("t_amplitude", "T-wave amplitude", "mV", "lead", "peak T-wave deflection (signed)"),
    _f("t_duration", "T-wave duration", "ms", "lead", "T onset to T offset"),
    _f("t_area", "T-wave area", "mV·ms", "lead", "signed area of the T wave"),
    _f("t_symmetry", "T-wave symmetry", "ratio", "lead", "ascending over descending limb duration"),
    _f("pr_interval_lead", "PR interval in the lead", "ms", "lead", "P onset to QRS onset"),
    _f("qt_interval_lead", "QT interval in the lead", "ms", "lead", "QRS onset to T offset"),
    _f("u_wave_amplitude", "U-wave amplitude", "mV", "lead", "deflection after the T wave (0 when absent)"),
    _f("delta_wave", "delta wave", "ms", "lead", "duration of a slurred QRS upstroke (pre-excitation)"),
    _f("noise_level", "noise level", "mV", "lead", "high-frequency residual around the median beat"),
    _f("baseline_drift", "baseline drift", "mV", "lead", "range of the low-frequency baseline"),
)

GLOBAL_FEATURES: tuple[Feature, ...] = (
    _f("heart_rate", "heart rate", "bpm", "global", "60 000 / mean RR interval"),
    _f("rr_sd", "RR variability (SDNN)", "ms", "global", "standard deviation of the RR intervals"),
    _f("rr_irregularity", "RR irregularity", "ratio", "global", "RMSSD divided by the mean RR interval"),
    _f("p_wave_ratio", "beats with a P wave", "ratio", "global", "share of beats preceded by a detected P wave"),
    _f("pr_interval", "PR interval", "ms", "global", "median P onset to QRS onset"),
    _f("qrs_duration", "QRS duration", "ms", "global", "median global QRS onset to offset"),
    _f("qt_interval", "QT interval", "ms", "global", "median QRS onset to T offset"),
    _f("qtc_bazett", "QTc (Bazett)", "ms", "global", "QT / sqrt(RR in s)"),
    _f("qtc_fridericia", "QTc (Fridericia)", "ms", "global", "QT / cbrt(RR in s)"),
    _f("p_axis", "P axis", "degrees", "global", "frontal-plane P-wave axis from leads I and aVF"),
    _f("qrs_axis", "QRS axis", "degrees", "global", "frontal-plane QRS axis from net QRS areas in I and aVF"),
    _f("t_axis", "T axis", "degrees", "global", "frontal-plane T-wave axis from leads I and aVF"),
)

FEATURES: tuple[Feature, ...] = LEAD_FEATURES + GLOBAL_FEATURES


def condition(key: str) -> Condition:
    for c in CONDITIONS:
        if c.key == key:
            return c
    raise KeyError(f"unknown condition {key!r}")


def feature(key: str) -> Feature:
    for f in FEATURES:
        if f.key == key:
            return f
    raise KeyError(f"unknown feature {key!r}")
