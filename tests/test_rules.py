"""ALFRED rules: every condition has one rule, tested at both sides of its thresholds."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from ecgkit.alfred import rules as R
from ecgkit.knowledge.catalog import CONDITIONS, GLOBAL_FEATURES, LEAD_FEATURES, LEADS

NAN = float("nan")
LIMB = ("I", "II", "III", "aVR", "aVL", "aVF")
PREC = ("V1", "V2", "V3", "V4", "V5", "V6")

# A normal adult ECG (male, 50 y, 72 bpm, axis +50°). Q and S as positive depths (mV), the
# convention of ecgkit.alfred.features; the rules read signed amplitudes as depths too.
_LEAD = {
    #        P     R     S     Q     qdur  T     qrs_pp area  rpt
    "I":   (0.10, 0.60, 0.10, 0.05, 15.0, 0.25, 0.70, 20.0, 30.0),
    "II":  (0.15, 1.00, 0.10, 0.05, 10.0, 0.30, 1.10, 30.0, 30.0),
    "III": (0.05, 0.50, 0.15, 0.00, 0.0, 0.10, 0.65, 10.0, 30.0),
    "aVR": (-0.10, 0.10, 0.70, 0.00, 0.0, -0.25, 0.80, -25.0, 20.0),
    "aVL": (0.03, 0.30, 0.20, 0.00, 0.0, 0.10, 0.50, 5.0, 30.0),
    "aVF": (0.10, 0.75, 0.10, 0.05, 10.0, 0.20, 0.85, 20.0, 30.0),
    "V1":  (0.08, 0.20, 0.90, 0.00, 0.0, 0.10, 1.10, -20.0, 20.0),
    "V2":  (0.08, 0.40, 1.40, 0.00, 0.0, 0.50, 1.80, -25.0, 25.0),
    "V3":  (0.08, 0.80, 0.90, 0.00, 0.0, 0.50, 1.70, 0.0, 30.0),
    "V4":  (0.08, 1.30, 0.50, 0.00, 0.0, 0.45, 1.80, 20.0, 30.0),
    "V5":  (0.08, 1.40, 0.30, 0.08, 15.0, 0.35, 1.70, 30.0, 35.0),
    "V6":  (0.08, 1.10, 0.15, 0.07, 15.0, 0.30, 1.25, 25.0, 35.0),
}


def base_features() -> dict:
    f = {}
    for lead, (p, r, s, q, qd, t, pp, area, rpt) in _LEAD.items():
        v = dict(p_amplitude=p, p_duration=100.0, p_terminal_negative=2.0 if lead == "V1" else 0.0,
                 q_amplitude=q, q_duration=qd, r_amplitude=r, r_duration=40.0,
                 r_prime_amplitude=0.0, s_amplitude=s, s_duration=20.0 if s > 0 else 0.0,
                 r_peak_time=rpt, qrs_amplitude=pp, qrs_area=area, qrs_duration_lead=88.0,
                 qrs_notch=0.0, r_s_ratio=r / s if s else NAN, q_r_ratio=q / r,
                 st_j=0.1 if lead in ("V2", "V3") else 0.0,
                 st_j60=0.1 if lead in ("V2", "V3") else 0.0, st_slope=0.5, t_amplitude=t,
                 t_duration=160.0, t_area=t * 100, t_symmetry=1.3, pr_interval_lead=160.0,
                 qt_interval_lead=380.0, u_wave_amplitude=0.0, delta_wave=8.0,
                 noise_level=0.01, baseline_drift=0.1)
        assert set(v) == {x.key for x in LEAD_FEATURES}
        for k, x in v.items():
            f[f"{k}_{lead}"] = x
    g = dict(heart_rate=72.0, rr_sd=25.0, rr_irregularity=0.03, p_wave_ratio=1.0,
             pr_interval=160.0, qrs_duration=90.0, qt_interval=380.0, qtc_bazett=415.0,
             qtc_fridericia=404.0, p_axis=55.0, qrs_axis=50.0, t_axis=40.0)
    assert set(g) == {x.key for x in GLOBAL_FEATURES}
    f.update(g, age=50.0, sex=0.0)
    return f


def make(*mods) -> dict:
    f = base_features()
    for m in mods:
        f.update(m)
    return f


def _all(feat, value):
    return {f"{feat}_{ld}": value for ld in LEADS}


# Per rule: pos (from the base → True), neg (each on top of pos, just across a threshold →
# False), also_pos (each on top of pos → True), drop (removed from the pos set → None) and
# extra (id, modifications of the base, expected).
CASES: dict[str, dict] = {
    "sinus_rhythm": dict(
        pos={}, neg=[{"heart_rate": 101}, {"heart_rate": 59.9}, {"p_wave_ratio": 0.89},
                     {"p_axis": 76}, {"p_axis": -1}],
        also_pos=[{"heart_rate": 100}, {"heart_rate": 60}, {"p_axis": 75}, {"p_axis": 0}],
        drop=["heart_rate"]),
    "sinus_bradycardia": dict(
        pos={"heart_rate": 59}, neg=[{"heart_rate": 60}, {"p_wave_ratio": 0.79}, {"p_axis": 91},
                                     {"p_axis": -16}],
        also_pos=[{"p_wave_ratio": 0.8}, {"p_axis": 90}, {"p_axis": -15}], drop=["p_axis"]),
    "sinus_tachycardia": dict(
        pos={"heart_rate": 101}, neg=[{"heart_rate": 100}, {"p_axis": 120}, {"p_wave_ratio": 0.79}],
        also_pos=[{"p_wave_ratio": 0.85, "heart_rate": 130}], drop=["heart_rate"]),
    "sinus_arrhythmia": dict(
        pos={"rr_sd": 60, "rr_irregularity": 0.05},
        neg=[{"rr_sd": 52.9}, {"rr_irregularity": 0.12}, {"p_wave_ratio": 0.8}],
        also_pos=[{"rr_sd": 53}], drop=["rr_sd"]),
    "atrial_fibrillation": dict(
        # RMSSD/SDNN = 0.2 · 833 / 150 = 1.1: irregularly irregular
        pos={"p_wave_ratio": 0.1, "rr_irregularity": 0.2, "rr_sd": 150},
        # P waves before most beats with abrupt short-long cycles (0.2 · 833 / 80 = 2.1 ≥ 1.75): premature
        # complexes, not AF; with few P waves it stays AF
        neg=[{"p_wave_ratio": 0.8}, {"rr_irregularity": 0.099}, {"p_wave_ratio": 1.0},
             {"p_wave_ratio": 0.7, "rr_sd": 80}],
        also_pos=[{"rr_irregularity": 0.10}, {"p_wave_ratio": 0.79}, {"p_wave_ratio": 0.0},
                  {"p_wave_ratio": 0.4, "rr_sd": 80}],
        drop=["p_wave_ratio", "rr_irregularity"]),
    "atrial_flutter": dict(
        pos={"heart_rate": 150, "p_wave_ratio": 0.2, "rr_irregularity": 0.02},
        neg=[{"heart_rate": 134}, {"heart_rate": 166}, {"p_wave_ratio": 0.5},
             {"rr_irregularity": 0.1}, {"qrs_duration": 120}],
        also_pos=[{"heart_rate": 135}, {"heart_rate": 165}], drop=["heart_rate"]),
    "irregular_rhythm": dict(
        # abrupt changes (RMSSD/SDNN = 0.12 · 833 / 50 = 2.0 ≥ 1.5): not sinus arrhythmia
        pos={"rr_irregularity": 0.12, "rr_sd": 50},
        neg=[{"rr_irregularity": 0.079}, {"p_wave_ratio": 0.49}, {"qrs_duration": 120},
             # gradual change (RMSSD/SDNN 0.08 · 833 / 80 = 0.83): sinus arrhythmia, not this
             {"rr_irregularity": 0.08, "rr_sd": 80},
             # P waves in only 60 % of beats, nRMSSD ≥ 0.10, no abrupt cycles (0.12 · 833 / 90 =
             # 1.1): atrial fibrillation, not this
             {"p_wave_ratio": 0.6, "rr_sd": 90}],
        also_pos=[{"rr_irregularity": 0.08, "rr_sd": 33}],
        drop=["rr_irregularity"]),
    "supraventricular_tachycardia": dict(
        pos={"heart_rate": 180, "p_wave_ratio": 0.1, "rr_irregularity": 0.01},
        neg=[{"heart_rate": 100}, {"rr_irregularity": 0.05}, {"p_wave_ratio": 0.5},
             {"qrs_duration": 120}], drop=["p_wave_ratio"]),
    "premature_complexes": dict(
        pos={"rr_irregularity": 0.2, "rr_sd": 60},
        neg=[{"rr_irregularity": 0.079}, {"rr_sd": 150}, {"p_wave_ratio": 0.49}],
        drop=["rr_sd"]),
    "paced_rhythm": dict(
        pos={"qrs_duration": 160, "qrs_axis": -60, "r_amplitude_V1": 0.1, "s_amplitude_V1": 1.5,
             "rr_irregularity": 0.01},
        neg=[{"qrs_duration": 139}, {"qrs_axis": -29}, {"r_amplitude_V1": 1.6},
             {"rr_irregularity": 0.05}], drop=["qrs_axis"]),
    "first_degree_av_block": dict(
        pos={"pr_interval": 201}, neg=[{"pr_interval": 200}, {"p_wave_ratio": 0.89}],
        drop=["pr_interval"]),
    "short_pr": dict(
        pos={"pr_interval": 119},
        neg=[{"pr_interval": 120}, {"qrs_duration": 110},
             {"delta_wave_V2": 40, "delta_wave_V3": 40}],
        also_pos=[{"delta_wave_V2": 40}, {"delta_wave_V4": NAN}], drop=["pr_interval"]),
    "wpw_pattern": dict(
        pos={"pr_interval": 100, "qrs_duration": 130, "delta_wave_V2": 40, "delta_wave_V3": 40,
             "delta_wave_V4": 45},
        neg=[{"pr_interval": 120}, {"qrs_duration": 109},
             {"delta_wave_V2": 10, "delta_wave_V3": 19}],
        also_pos=[{"qrs_duration": 110}, {"delta_wave_V2": 20, "delta_wave_V3": 20, "delta_wave_V4": 0}],
        drop=["qrs_duration"]),
    "complete_lbbb": dict(
        pos={"qrs_duration": 150, "r_peak_time_V5": 80, "r_peak_time_V6": 85,
             "q_amplitude_I": 0, "q_amplitude_V5": 0, "q_amplitude_V6": 0,
             "r_amplitude_V1": 0.1, "s_amplitude_V1": 1.5},
        neg=[{"qrs_duration": 119}, {"r_peak_time_V6": 60}, {"q_amplitude_V5": 0.05},
             {"r_amplitude_V1": 1.6}],
        also_pos=[{"qrs_duration": 120}, {"q_amplitude_I": 0.04}], drop=["r_peak_time_V5"]),
    "complete_rbbb": dict(
        pos={"qrs_duration": 140, "r_amplitude_V1": 0.2, "r_prime_amplitude_V1": 0.6,
             "s_duration_I": 50, "s_duration_V6": 50},
        neg=[{"qrs_duration": 119}, {"r_prime_amplitude_V1": 0.2}, {"s_duration_V6": 30}],
        also_pos=[{"r_prime_amplitude_V1": 0, "r_peak_time_V1": 60},
                  {"s_duration_I": 41, "r_duration_I": 60}, {"qrs_duration": 120}],
        drop=["s_duration_I"]),
    "incomplete_lbbb": dict(
        pos={"qrs_duration": 115, "r_peak_time_V4": 65, "r_peak_time_V5": 70,
             "r_peak_time_V6": 70, "q_amplitude_I": 0, "q_amplitude_V5": 0, "q_amplitude_V6": 0},
        neg=[{"qrs_duration": 120}, {"qrs_duration": 109}, {"r_peak_time_V4": 60},
             {"q_amplitude_I": 0.1}],
        also_pos=[{"qrs_duration": 110}, {"qrs_duration": 119}], drop=["r_peak_time_V4"]),
    "incomplete_rbbb": dict(
        pos={"qrs_duration": 112, "r_prime_amplitude_V1": 0.1, "s_duration_I": 45,
             "s_duration_V6": 45},
        neg=[{"qrs_duration": 120}, {"qrs_duration": 109}, {"r_prime_amplitude_V1": 0.04},
             {"s_duration_I": 30}],
        also_pos=[{"r_prime_amplitude_V1": 0, "r_prime_amplitude_V2": 0.05}],
        drop=["r_prime_amplitude_V1"]),
    "left_anterior_fascicular_block": dict(
        pos={"qrs_axis": -60, "q_amplitude_aVL": 0.1, "r_amplitude_aVL": 0.9,
             "s_amplitude_aVL": 0.1, "r_peak_time_aVL": 50},
        neg=[{"qrs_axis": -44}, {"qrs_duration": 120}, {"q_amplitude_aVL": 0},
             {"r_peak_time_aVL": 44}, {"s_amplitude_aVL": 1.0}],
        also_pos=[{"qrs_axis": -90}, {"qrs_axis": -45}, {"qrs_axis": 270}], drop=["qrs_axis"]),
    "left_posterior_fascicular_block": dict(
        pos={"qrs_axis": 110, "r_amplitude_I": 0.2, "s_amplitude_I": 0.6, "q_amplitude_III": 0.1,
             "r_amplitude_III": 1.0, "s_amplitude_III": 0.1},
        neg=[{"qrs_axis": 90}, {"qrs_duration": 120}, {"r_amplitude_I": 0.7},
             {"q_amplitude_III": 0}],
        also_pos=[{"qrs_axis": 180}], drop=["q_amplitude_III"]),
    "nonspecific_ivcd": dict(
        pos={"qrs_duration": 125},
        neg=[{"qrs_duration": 109},
             {"r_peak_time_V5": 80, "r_peak_time_V6": 85, "q_amplitude_I": 0,
              "q_amplitude_V5": 0, "q_amplitude_V6": 0},
             {"r_prime_amplitude_V1": 0.6, "s_duration_I": 50, "s_duration_V6": 50},
             {"delta_wave_V2": 40, "delta_wave_V3": 40}],
        also_pos=[{"qrs_duration": 110}], drop=["qrs_duration"]),
    "long_qt": dict(
        pos={"qtc_bazett": 450}, neg=[{"qtc_bazett": 449}], drop=["qtc_bazett"],
        extra=[("female_pos", {"sex": 1, "qtc_bazett": 460}, True),
               ("female_neg", {"sex": 1, "qtc_bazett": 459}, False),
               ("male_455", {"sex": 0, "qtc_bazett": 455}, True),
               ("female_455", {"sex": 1, "qtc_bazett": 455}, False),
               ("sex_missing_high", {"sex": NAN, "qtc_bazett": 470}, True),
               ("sex_missing_low", {"sex": NAN, "qtc_bazett": 440}, False),
               ("sex_missing_between", {"sex": NAN, "qtc_bazett": 455}, None),
               ("fast_uses_fridericia_neg",
                {"heart_rate": 100, "qtc_bazett": 470, "qtc_fridericia": 440}, False),
               ("fast_uses_fridericia_pos",
                {"heart_rate": 100, "qtc_bazett": 440, "qtc_fridericia": 455}, True),
               ("no_hr_agree", {"heart_rate": NAN, "qtc_bazett": 470, "qtc_fridericia": 460}, True),
               ("no_hr_disagree",
                {"heart_rate": NAN, "qtc_bazett": 470, "qtc_fridericia": 440}, None)]),
    "short_qt": dict(
        pos={"qtc_bazett": 390}, neg=[{"qtc_bazett": 391}], drop=["qtc_bazett"],
        extra=[("slow_uses_fridericia",
                {"heart_rate": 50, "qtc_bazett": 380, "qtc_fridericia": 400}, False),
               ("no_hr_disagree", {"heart_rate": NAN, "qtc_bazett": 380}, None)]),
    "lvh_sokolow_lyon": dict(
        pos={"s_amplitude_V1": 2.0, "r_amplitude_V5": 1.5},
        neg=[{"r_amplitude_V5": 1.49}, {"qrs_duration": 120}],
        also_pos=[{"r_amplitude_V5": 1.0, "r_amplitude_V6": 1.5}, {"r_amplitude_V6": NAN},
                  {"s_amplitude_V1": -2.0}],
        drop=["r_amplitude_V5"]),
    "lvh_cornell": dict(
        pos={"r_amplitude_aVL": 1.0, "s_amplitude_V3": 1.81},
        neg=[{"s_amplitude_V3": 1.79}, {"qrs_duration": 120}], drop=["s_amplitude_V3"],
        extra=[("female_pos", {"sex": 1, "r_amplitude_aVL": 0.5, "s_amplitude_V3": 1.51}, True),
               ("female_neg", {"sex": 1, "r_amplitude_aVL": 0.5, "s_amplitude_V3": 1.49}, False),
               ("female_2.5", {"sex": 1, "r_amplitude_aVL": 1.0, "s_amplitude_V3": 1.5}, True),
               ("male_2.5", {"sex": 0, "r_amplitude_aVL": 1.0, "s_amplitude_V3": 1.5}, False),
               ("sex_missing_2.5", {"sex": NAN, "r_amplitude_aVL": 1.0, "s_amplitude_V3": 1.5}, None),
               ("sex_missing_3.0", {"sex": NAN, "r_amplitude_aVL": 1.0, "s_amplitude_V3": 2.0}, True)]),
    "rvh": dict(
        pos={"r_amplitude_V1": 0.8, "s_amplitude_V1": 0.3, "qrs_axis": 120},
        neg=[{"qrs_axis": 110}, {"r_amplitude_V1": 0.69, "s_amplitude_V1": 0.7},
             {"qrs_duration": 120}],
        also_pos=[{"r_amplitude_V1": 0.5, "s_amplitude_V1": 0.4}, {"r_amplitude_V1": 0.7, "s_amplitude_V1": 1.0}],
        drop=["qrs_axis"]),
    "left_atrial_enlargement": dict(
        pos={"p_duration_II": 120}, neg=[{"p_duration_II": 119}],
        also_pos=[{"p_duration_II": 100, "p_terminal_negative_V1": 4.0},
                  {"p_duration_II": 100, "p_terminal_negative_V1": -4.0}],
        drop=["p_duration_II"],
        extra=[("ptf_below", {"p_terminal_negative_V1": 3.9}, False),
               ("ii_wide_v1_missing", {"p_duration_II": 130, "p_terminal_negative_V1": NAN}, True)]),
    "right_atrial_enlargement": dict(
        pos={"p_amplitude_II": 0.26}, neg=[{"p_amplitude_II": 0.25}],
        also_pos=[{"p_amplitude_II": 0.1, "p_amplitude_aVF": 0.3},
                  {"p_amplitude_II": 0.1, "p_amplitude_V1": 0.16}],
        drop=["p_amplitude_II"], extra=[("v1_0.15", {"p_amplitude_V1": 0.15}, False)]),
    "q_waves_inferior": dict(
        pos={"q_duration_II": 40, "q_amplitude_II": 0.2, "q_duration_aVF": 40, "q_amplitude_aVF": 0.2},
        neg=[{"q_duration_aVF": 29}, {"q_amplitude_II": 0.09}],
        also_pos=[{"q_duration_aVF": 30, "q_amplitude_aVF": 0.1},
                  {"r_amplitude_aVF": 0.0, "q_amplitude_aVF": 0.5, "q_duration_aVF": 10},
                  {"q_duration_II": 10, "q_amplitude_II": 0.05, "q_duration_III": 40,
                   "q_amplitude_III": 0.2}],
        drop=["q_duration_aVF"],
        extra=[("confined_to_III", {"q_duration_III": 50, "q_amplitude_III": 0.4}, False)]),
    "q_waves_anterior": dict(
        pos={"q_duration_V2": 25, "q_amplitude_V2": 0.1}, neg=[{"q_duration_V2": 20}],
        also_pos=[{"q_duration_V2": 0, "r_amplitude_V2": 0.0, "s_amplitude_V2": 1.0,
                   "r_amplitude_V3": 0.0, "s_amplitude_V3": 1.2},
                  {"q_duration_V2": 0, "q_duration_V4": 30, "q_amplitude_V4": 0.1,
                   "q_duration_V5": 35, "q_amplitude_V5": 0.2}],
        drop=["q_duration_V2"],
        extra=[("qs_V2_only", {"r_amplitude_V2": 0.0, "s_amplitude_V2": 1.0}, False),
               ("qs_V2_only_as_q", {"r_amplitude_V2": 0.0, "q_amplitude_V2": 1.0,
                                    "q_duration_V2": 120, "s_amplitude_V2": 1.0}, False),
               ("qs_V2_V3_as_q", {"r_amplitude_V2": 0.0, "q_amplitude_V2": 1.0,
                                  "q_duration_V2": 120, "s_amplitude_V2": 1.0,
                                  "r_amplitude_V3": 0.0, "q_amplitude_V3": 0.8,
                                  "q_duration_V3": 110, "s_amplitude_V3": 0.8}, True)]),
    "q_waves_lateral": dict(
        pos={"q_duration_V5": 40, "q_amplitude_V5": 0.2, "q_duration_V6": 35, "q_amplitude_V6": 0.15},
        neg=[{"q_duration_V6": 29}, {"q_amplitude_V5": 0.09}],
        also_pos=[{"q_duration_V6": 0, "q_duration_V4": 30, "q_amplitude_V4": 0.1}],
        drop=["q_amplitude_V6"],
        extra=[("I_aVL", {"q_duration_I": 30, "q_amplitude_I": 0.1, "q_duration_aVL": 30,
                          "q_amplitude_aVL": 0.1}, True),
               ("aVL_only", {"q_duration_aVL": 40, "q_amplitude_aVL": 0.3}, False)]),
    "st_elevation_inferior": dict(
        pos={"st_j_II": 0.1, "st_j_aVF": 0.15}, neg=[{"st_j_aVF": 0.09}],
        also_pos=[{"st_j_II": 0.0, "st_j_III": 0.1}], drop=["st_j_aVF"]),
    "st_elevation_anterior": dict(
        pos={"st_j_V2": 0.2, "st_j_V3": 0.2}, neg=[{"st_j_V3": 0.19}], drop=["st_j_V3"],
        also_pos=[{"st_j_V2": 0.0, "st_j_V4": 0.1}],
        extra=[("male_young_pos", {"age": 30, "st_j_V2": 0.25, "st_j_V3": 0.25}, True),
               ("male_young_neg", {"age": 30, "st_j_V2": 0.25, "st_j_V3": 0.24}, False),
               ("female_pos", {"sex": 1, "st_j_V2": 0.15, "st_j_V3": 0.15}, True),
               ("female_neg", {"sex": 1, "st_j_V2": 0.15, "st_j_V3": 0.14}, False),
               ("female_0.2", {"sex": 1, "st_j_V2": 0.2, "st_j_V3": 0.2}, True),
               ("male_young_0.2", {"age": 30, "st_j_V2": 0.2, "st_j_V3": 0.2}, False),
               ("V1_V4_only", {"st_j_V1": 0.2, "st_j_V4": 0.2}, False),
               ("sex_missing", {"sex": NAN, "st_j_V2": 0.17, "st_j_V3": 0.17}, None),
               ("sex_missing_high", {"sex": NAN, "st_j_V2": 0.3, "st_j_V3": 0.3}, True)]),
    "st_elevation_lateral": dict(
        pos={"st_j_I": 0.1, "st_j_aVL": 0.1}, neg=[{"st_j_aVL": 0.09}],
        also_pos=[{"st_j_aVL": 0.0, "st_j_V5": 0.1, "st_j_V6": 0.12}], drop=["st_j_aVL"],
        extra=[("I_V6_not_contiguous", {"st_j_I": 0.2, "st_j_V6": 0.2}, False)]),
    "st_depression": dict(
        pos={"st_j_V5": -0.1, "st_j60_V5": -0.1, "st_j_V6": -0.05, "st_j60_V6": -0.05},
        neg=[{"st_j60_V6": 0.0}, {"st_j_V6": -0.04}], drop=["st_j_V6"],
        also_pos=[{"st_j_II": -0.1, "st_j60_II": -0.1, "st_j_aVF": -0.06, "st_j60_aVF": -0.06,
                   "st_j_V6": 0.0}],
        extra=[("not_contiguous", {"st_j_II": -0.1, "st_j60_II": -0.1, "st_j_V5": -0.1,
                                   "st_j60_V5": -0.1}, False)]),
    "t_wave_inversion": dict(
        pos={"t_amplitude_V5": -0.2, "t_amplitude_V6": -0.1},
        neg=[{"t_amplitude_V6": -0.09}, {"r_amplitude_V6": 0.2, "s_amplitude_V6": 0.3}],
        also_pos=[{"r_amplitude_V6": 0.3, "s_amplitude_V6": 0.2}], drop=["t_amplitude_V6"],
        extra=[("V1_V2_excluded", {"t_amplitude_V1": -0.3, "r_amplitude_V1": 1.0,
                                   "t_amplitude_V2": -0.3, "r_amplitude_V2": 1.0}, False),
               ("inferior", {"t_amplitude_III": -0.2, "t_amplitude_aVF": -0.2}, True)]),
    "low_t_waves": dict(
        pos={"t_amplitude_V5": 0.05, "t_amplitude_V6": 0.1},
        neg=[{"t_amplitude_V6": 0.12}, {"r_amplitude_V6": 0.5}, {"t_amplitude_V6": -0.1}],
        drop=["t_amplitude_V6"],
        extra=[("different_territories", {"t_amplitude_V4": 0.05, "t_amplitude_V5": 0.05}, False),
               ("inferior", {"t_amplitude_II": 0.0, "t_amplitude_aVF": 0.05}, True)]),
    "poor_r_wave_progression": dict(
        pos={"r_amplitude_V3": 0.3}, neg=[{"r_amplitude_V3": 0.31}, {"q_duration_V3": 25}],
        drop=["r_amplitude_V3"]),
    "left_axis_deviation": dict(
        pos={"qrs_axis": -31}, neg=[{"qrs_axis": -30}, {"qrs_axis": -91}],
        also_pos=[{"qrs_axis": -90}, {"qrs_axis": 300}], drop=["qrs_axis"]),
    "right_axis_deviation": dict(
        pos={"qrs_axis": 91}, neg=[{"qrs_axis": 90}, {"qrs_axis": -170}],
        also_pos=[{"qrs_axis": 180}, {"qrs_axis": -180}], drop=["qrs_axis"]),
    "low_qrs_voltage": dict(
        pos={f"qrs_amplitude_{ld}": 0.4 for ld in LIMB}, neg=[{"qrs_amplitude_II": 0.5}],
        drop=["qrs_amplitude_aVL"],
        extra=[("precordial", {f"qrs_amplitude_{ld}": 0.9 for ld in PREC}, True),
               ("precordial_one_1.0", {**{f"qrs_amplitude_{ld}": 0.9 for ld in PREC},
                                       "qrs_amplitude_V4": 1.0}, False)]),
    "high_qrs_voltage": dict(
        pos={"r_amplitude_II": 2.0}, neg=[{"r_amplitude_II": 1.99}], drop=["r_amplitude_II"],
        extra=[("S_V2", {"s_amplitude_V2": 3.0}, True), ("S_V2_below", {"s_amplitude_V2": 2.99}, False),
               ("R_V5", {"r_amplitude_V5": 3.0}, True), ("R_aVL", {"r_amplitude_aVL": 1.11}, True),
               ("R_aVL_1.1", {"r_amplitude_aVL": 1.1}, False),
               ("sokolow", {"s_amplitude_V1": 2.2}, True), ("S_aVR", {"s_amplitude_aVR": 2.0}, True)]),
    "noisy_signal": dict(
        pos={"noise_level_V3": 0.06}, neg=[{"noise_level_V3": 0.05}], drop=["noise_level_V3"]),
    "baseline_wander": dict(
        pos={"baseline_drift_I": 0.6}, neg=[{"baseline_drift_I": 0.5}], drop=["baseline_drift_I"]),
    "suspected_lead_reversal": dict(
        pos={"p_amplitude_I": -0.1, "qrs_area_I": -20, "p_amplitude_aVR": 0.05, "qrs_area_aVR": 10},
        neg=[{"qrs_area_I": 5}, {"p_amplitude_aVR": -0.05}], drop=["p_amplitude_I"],
        extra=[("ra_ll", {"p_amplitude_II": -0.1, "qrs_area_II": -20, "p_amplitude_aVF": -0.1,
                          "qrs_area_aVF": -15, "p_amplitude_aVR": 0.1, "qrs_area_aVR": 20}, True)]),
    "flat_lead": dict(
        pos={"qrs_amplitude_V4": 0.04}, neg=[{"qrs_amplitude_V4": 0.05},
                                             {f"qrs_amplitude_{ld}": 0.3 for ld in LEADS if ld != "V4"}],
        drop=["qrs_amplitude_V4"]),
}


def _params():
    out = []
    for key, c in CASES.items():
        out.append(pytest.param(key, [c["pos"]], True, id=f"{key}-pos"))
        for i, m in enumerate(c.get("neg", [])):
            out.append(pytest.param(key, [c["pos"], m], False, id=f"{key}-neg{i}"))
        for i, m in enumerate(c.get("also_pos", [])):
            out.append(pytest.param(key, [c["pos"], m], True, id=f"{key}-alsopos{i}"))
        for k in c.get("drop", []):
            out.append(pytest.param(key, [c["pos"], {k: NAN}], None, id=f"{key}-drop-{k}"))
        for name, m, exp in c.get("extra", []):
            out.append(pytest.param(key, [m], exp, id=f"{key}-{name}"))
    return out


@pytest.mark.parametrize("key,mods,expected", _params())
def test_rule_threshold(key, mods, expected):
    f = make(*mods)
    got = R.rule(key).evaluate(f)
    assert got is expected, (key, mods, R.rule(key).criterion)
    # the same result through the table, from a Series with the NaNs in it
    res = R.evaluate_rules(pd.Series(f))
    assert res.loc[key, "positive"] is expected


def test_every_condition_has_exactly_one_rule_and_cases():
    keys = [r.key for r in R.RULES]
    assert len(keys) == len(set(keys)) == len(CONDITIONS) == 45
    assert set(keys) == {c.key for c in CONDITIONS}
    assert set(CASES) == set(keys)
    for c in CASES.values():
        assert c.get("neg") or any(e[2] is False for e in c.get("extra", []))
        assert c.get("drop")


def test_needs_are_known_features_and_criteria_have_numbers():
    valid = {f"{f.key}_{ld}" for f in LEAD_FEATURES for ld in LEADS}
    valid |= {f.key for f in GLOBAL_FEATURES} | {"age", "sex"}
    for r in R.RULES:
        assert r.needs and set(r.needs) <= valid, r.key
        assert len(set(r.needs)) == len(r.needs), r.key
        assert any(ch.isdigit() for ch in r.criterion), r.key
        assert ("heuristic" in r.criterion.lower()) == r.heuristic, r.key


def test_base_is_normal_and_fully_determined():
    res = R.evaluate_rules(base_features())
    assert res["positive"].map(lambda v: v is not None).all(), res[res["positive"].isna()]
    assert R.positive_conditions(res) == ["sinus_rhythm"]


@pytest.mark.parametrize("key", [r.key for r in R.RULES])
def test_all_needs_missing_gives_none(key):
    r = R.rule(key)
    f = make({k: NAN for k in r.needs})
    assert r.evaluate(f) is None
    g = {k: v for k, v in base_features().items() if k not in r.needs}  # absent keys
    assert r.evaluate(g) is None
    assert r.evaluate({}) is None


def test_empty_features_all_undetermined():
    res = R.evaluate_rules({})
    assert res["positive"].map(lambda v: v is None).all()
    assert R.positive_conditions(res) == []
    assert not any(R.rules_to_superclasses(res).values())


def test_signed_amplitudes_read_as_depths():
    signed = {k: -v for k, v in base_features().items() if k.startswith(("q_amplitude", "s_amplitude"))}
    res = R.evaluate_rules(make(signed))
    assert R.positive_conditions(res) == ["sinus_rhythm"]
    lvh = make(signed, {"s_amplitude_V1": -2.5, "r_amplitude_V5": 1.5})
    assert R.rule("lvh_sokolow_lyon").evaluate(lvh) is True
    assert R.rule("lvh_sokolow_lyon").evaluate(make(signed, {"s_amplitude_V1": -1.9})) is False
    assert R.rule("lvh_sokolow_lyon").evaluate(make({"s_amplitude_V1": 2.5})) is True   # a positive depth


def test_rule_reading_undeclared_feature_fails():
    bad = R.Rule("sinus_rhythm", "test 1", ("heart_rate",), lambda f: f("qrs_duration") > 0)
    with pytest.raises(KeyError, match="not in its needs"):
        bad.evaluate(make())


def test_evaluate_rules_frame():
    res = R.evaluate_rules(make({"pr_interval": 230.0, "p_terminal_negative_V1": NAN}))
    assert list(res.index) == [c.key for c in CONDITIONS]
    assert list(res.columns) == ["name", "category", "positive", "criterion", "evidence",
                                 "superclasses"]
    assert res.loc["first_degree_av_block", "positive"] is True
    assert "pr_interval=230 ms" in res.loc["first_degree_av_block", "evidence"]
    assert "missing: p_terminal_negative_V1" in res.loc["left_atrial_enlargement", "evidence"]
    assert res.loc["lvh_cornell", "superclasses"] == ("HYP",)
    assert R.positive_conditions(res) == ["sinus_rhythm", "first_degree_av_block"]


def test_rules_to_superclasses_normal():
    sc = R.rules_to_superclasses(R.evaluate_rules(base_features()))
    assert sc == {"NORM": True, "MI": False, "STTC": False, "CD": False, "HYP": False}


def test_rules_to_superclasses_lvh():
    res = R.evaluate_rules(make({"s_amplitude_V1": 2.2, "r_amplitude_V5": 2.0}))
    assert res.loc["lvh_sokolow_lyon", "positive"] is True
    sc = R.rules_to_superclasses(res)
    assert sc["HYP"] and not sc["NORM"] and not sc["MI"] and not sc["CD"] and not sc["STTC"]


def test_rules_to_superclasses_inferior_q():
    res = R.evaluate_rules(make(CASES["q_waves_inferior"]["pos"]))
    sc = R.rules_to_superclasses(res)
    assert sc["MI"] and not sc["NORM"] and not sc["HYP"] and not sc["CD"]


def test_rules_to_superclasses_rhythm_only_is_not_norm():
    # AF maps to no superclass, and without sinus rhythm NORM does not hold either
    res = R.evaluate_rules(make(CASES["atrial_fibrillation"]["pos"]))
    assert res.loc["atrial_fibrillation", "positive"] is True
    assert not any(R.rules_to_superclasses(res).values())
    # a quality warning does not block NORM
    res = R.evaluate_rules(make({"noise_level_V2": 0.2}))
    assert R.rules_to_superclasses(res)["NORM"] is True


def test_rule_table():
    t = R.rule_table()
    assert len(t) == 45 and t["key"].is_unique
    assert {"key", "name", "category", "criterion", "superclasses", "heuristic"} <= set(t.columns)
    assert t.set_index("key").loc["complete_lbbb", "superclasses"] == "CD"
    assert t["heuristic"].sum() >= 5
    assert not t["criterion"].str.strip().eq("").any()
    assert math.isclose(R.PTF_V1_MVMS, 0.1 * 40)


def test_many_records():
    from ecgkit.alfred.rules import RULES, evaluate_rules_many
    import pandas as pd
    normal = base_features()
    table = evaluate_rules_many(pd.DataFrame([normal, {**normal, "pr_interval": 240.0}], index=["n", "avb"]))
    assert table.shape == (2, len(RULES))
    assert bool(table.loc["avb", "first_degree_av_block"]) is True
    assert bool(table.loc["n", "first_degree_av_block"]) is False
