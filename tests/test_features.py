"""ALFRED feature extraction (ecgkit.alfred.features) against known ground truth."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ecgkit.alfred.features import extract_features, feature_names, feature_table
from ecgkit.data.wfdb_io import LEADS
from ecgkit.knowledge.catalog import GLOBAL_FEATURES, LEAD_FEATURES
from ecgkit.data.synthetic import simulate_ecg

FS = 500
RR = 0.8  # s, 75 bpm
# hand-made beat (times relative to the R peak, s): Gaussians (centre, sigma, amplitude)
P_WAVE = (-0.10, 0.012, 0.15)
Q_WAVE = (-0.030, 0.005, -0.10)
R_AMP, R_SIG = 1.2, 0.008
S_WAVE = (0.030, 0.005, -0.30)
T_WAVE = (0.25, 0.04, 0.30)
# lead scale factors: aVF / I = sqrt(3) -> every frontal axis is 60 degrees
SCALE = {lead: 1.0 for lead in LEADS}
SCALE.update({"I": 1.0, "aVF": math.sqrt(3.0), "aVR": -1.0, "V1": 0.5})
ST_SHIFT = {"V2": 0.2, "V3": 0.15}  # mV from J to T offset


def _g(t, c, s, a):
    return a * np.exp(-0.5 * ((t - c) / s) ** 2)


def handmade(with_p: bool = True, all_rows: bool = True, duration: float = 10.0):
    """Signal and fiducials with exactly known waves (R peaks at 0.5 s + k·RR)."""
    n = int(duration * FS)
    t = np.arange(n) / FS
    beats = np.arange(0.5, duration - 0.5, RR)
    base = np.zeros(n)
    st = np.zeros(n)
    rows = []
    for b, tb in enumerate(beats):
        rel = t - tb
        if with_p:
            base += _g(rel, *P_WAVE)
        base += _g(rel, *Q_WAVE) + _g(rel, 0.0, R_SIG, R_AMP) + _g(rel, *S_WAVE) + _g(rel, *T_WAVE)
        q_on = tb + Q_WAVE[0] - 2.5 * Q_WAVE[1]
        q_off = tb + S_WAVE[0] + 2.5 * S_WAVE[1]
        t_off = tb + T_WAVE[0] + 2.5 * T_WAVE[1]
        j_s = round(q_off * FS) / FS - 1e-9  # the shift starts exactly at the J sample
        st += ((t >= j_s) & (t <= t_off)).astype(float)
        p_on = tb + P_WAVE[0] - 2.5 * P_WAVE[1] if with_p else None
        p_off = tb + P_WAVE[0] + 2.5 * P_WAVE[1] if with_p else None
        s = lambda v: -1 if v is None else int(round(v * FS))  # noqa: E731
        row = {"beat": b, "p_on": s(p_on), "p_peak": s(tb + P_WAVE[0]) if with_p else -1,
               "p_off": s(p_off), "qrs_on": s(q_on), "r_peak": s(tb), "qrs_off": s(q_off),
               "t_peak": s(tb + T_WAVE[0]), "t_off": s(t_off)}
        for lead in (["all"] if all_rows else []) + list(LEADS):
            rows.append({"lead": lead, **row})
    sig = np.stack([SCALE[lead] * base + ST_SHIFT.get(lead, 0.0) * st for lead in LEADS], axis=1)
    fid = pd.DataFrame(rows)[["lead", "beat", "p_on", "p_peak", "p_off", "qrs_on", "r_peak",
                              "qrs_off", "t_peak", "t_off"]]
    return sig.astype(np.float32), fid


@pytest.fixture(scope="module")
def hand():
    sig, fid = handmade()
    return extract_features(sig, FS, fid, age=61, sex="F")


@pytest.fixture(scope="module")
def norm():
    sig, fid = simulate_ecg(("NORM",), noise=0.0, heart_rate=60, seed=1)
    f, m = extract_features(sig, FS, fid, age=55, sex=0)
    return f, m, fid.attrs["measurements"]


def _check_complete(f: pd.Series, missing: dict):
    names = feature_names()
    assert len(names) == 30 * 12 + 12 + 2 == len(set(names))
    assert list(f.index) == names
    for name in names:
        assert (not np.isnan(f[name])) or (name in missing and missing[name]), name
    assert all(np.isnan(f[k]) for k in missing)
    for feat in LEAD_FEATURES:
        for lead in LEADS:
            assert f"{feat.key}_{lead}" in f.index
    for feat in GLOBAL_FEATURES:
        assert feat.key in f.index


def test_handmade_exact(hand):
    f, missing = hand
    _check_complete(f, missing)
    assert f["heart_rate"] == pytest.approx(60 / RR, abs=0.5)
    qrs_on = Q_WAVE[0] - 2.5 * Q_WAVE[1]
    assert f["pr_interval"] == pytest.approx((qrs_on - P_WAVE[0] + 2.5 * P_WAVE[1]) * 1000, abs=4)
    assert f["qrs_duration"] == pytest.approx((S_WAVE[0] + 2.5 * S_WAVE[1] - qrs_on) * 1000, abs=4)
    qt = (T_WAVE[0] + 2.5 * T_WAVE[1] - qrs_on) * 1000
    assert f["qt_interval"] == pytest.approx(qt, abs=4)
    assert f["qtc_bazett"] == pytest.approx(qt / math.sqrt(RR), abs=5)
    assert f["qtc_fridericia"] == pytest.approx(qt / RR ** (1 / 3), abs=5)
    assert f["rr_sd"] == pytest.approx(0.0, abs=2.5)
    assert f["p_wave_ratio"] == 1.0
    for lead in ("I", "II", "V4", "aVF"):
        k = SCALE[lead]
        assert f[f"r_amplitude_{lead}"] == pytest.approx(R_AMP * k, abs=0.02)
        assert f[f"q_amplitude_{lead}"] == pytest.approx(-Q_WAVE[2] * k, abs=0.02)
        assert f[f"s_amplitude_{lead}"] == pytest.approx(-S_WAVE[2] * k, abs=0.02)
        assert f[f"p_amplitude_{lead}"] == pytest.approx(P_WAVE[2] * k, abs=0.02)
        assert f[f"t_amplitude_{lead}"] == pytest.approx(T_WAVE[2] * k, abs=0.02)
        assert f[f"r_peak_time_{lead}"] == pytest.approx(-qrs_on * 1000, abs=4)
        assert f[f"st_j60_{lead}"] == pytest.approx(0.0, abs=0.02)
        assert f[f"r_prime_amplitude_{lead}"] == 0.0
        assert f[f"qrs_notch_{lead}"] == 0.0
    # aVR is the mirror image: a QS-like complex with an initial r (mirror of the q)
    assert f["t_amplitude_aVR"] == pytest.approx(-T_WAVE[2], abs=0.02)
    for ax in ("p_axis", "qrs_axis", "t_axis"):
        assert f[ax] == pytest.approx(60.0, abs=2.0)
    # ST shift relative to the PR baseline
    for lead, shift in ST_SHIFT.items():
        assert f[f"st_j60_{lead}"] == pytest.approx(shift, abs=0.02)
        assert f[f"st_j_{lead}"] == pytest.approx(shift, abs=0.05)
    assert f["age"] == 61 and f["sex"] == 1.0
    assert f["noise_level_II"] < 0.005 and f["baseline_drift_II"] < 0.1


def test_global_boundaries_derived_without_all_rows(hand):
    sig, fid = handmade(all_rows=False)
    f, missing = extract_features(sig, FS, fid)
    ref = hand[0]
    for k in ("heart_rate", "pr_interval", "qrs_duration", "qt_interval", "qrs_axis"):
        assert f[k] == pytest.approx(ref[k], abs=1e-6)
    assert missing["age"] == "age not given" and missing["sex"] == "sex not given"


def test_no_p_wave_gives_nan_with_reason():
    sig, fid = handmade(with_p=False)
    f, missing = extract_features(sig, FS, fid)
    _check_complete(f, missing)
    assert np.isnan(f["pr_interval"]) and "P wave" in missing["pr_interval"]
    assert np.isnan(f["p_amplitude_II"]) and "P wave" in missing["p_amplitude_II"]
    assert np.isnan(f["p_axis"]) and "p_axis" in missing
    assert f["p_wave_ratio"] == 0.0
    # the TP reference still gives a correct ST level and R amplitude
    assert f["st_j60_V2"] == pytest.approx(ST_SHIFT["V2"], abs=0.03)
    assert f["r_amplitude_II"] == pytest.approx(R_AMP, abs=0.03)


def test_one_beat_reasons():
    sig, fid = handmade(duration=1.2)
    f, missing = extract_features(sig, FS, fid)
    _check_complete(f, missing)
    assert np.isnan(f["heart_rate"]) and "fewer than 2 beats" in missing["heart_rate"]


def test_synthetic_norm_matches_ground_truth(norm):
    f, missing, gt = norm
    _check_complete(f, missing)
    assert f["heart_rate"] == pytest.approx(gt["heart_rate"], abs=1.0)
    assert f["pr_interval"] == pytest.approx(gt["pr_ms"], abs=10)
    assert f["qrs_duration"] == pytest.approx(gt["qrs_ms"], abs=10)
    assert f["qt_interval"] == pytest.approx(gt["qt_ms"], abs=10)
    assert f["qtc_bazett"] == pytest.approx(gt["qtc_ms"], abs=10)
    rr_s = gt["rr_mean_ms"] / 1000
    assert f["qtc_fridericia"] == pytest.approx(gt["qt_ms"] / rr_s ** (1 / 3), abs=10)
    assert f["rr_sd"] == pytest.approx(gt["rr_sd_ms"], abs=5)
    assert f["qrs_axis"] == pytest.approx(gt["axis_deg"], abs=10)
    sl = f["s_amplitude_V1"] + max(f["r_amplitude_V5"], f["r_amplitude_V6"])
    assert sl == pytest.approx(gt["sokolow_lyon_mv"], abs=0.1)
    assert f["t_amplitude_II"] == pytest.approx(gt["t_amp_ii_mv"], abs=0.05)
    assert f["t_amplitude_V3"] == pytest.approx(gt["t_amp_v3_mv"], abs=0.05)
    assert f["p_wave_ratio"] == 1.0 and f["rr_irregularity"] < 0.05
    for lead in LEADS:
        assert abs(f[f"st_j60_{lead}"]) < 0.05, lead


def test_lafb_axis():
    sig, fid = simulate_ecg(("LAFB",), noise=0.0, seed=3)
    f, _ = extract_features(sig, FS, fid)
    assert f["qrs_axis"] <= -45
    assert f["qrs_axis"] == pytest.approx(fid.attrs["measurements"]["axis_deg"], abs=10)


def test_lvh_sokolow_lyon():
    sig, fid = simulate_ecg(("LVH",), noise=0.0, seed=3)
    f, _ = extract_features(sig, FS, fid)
    sl = f["s_amplitude_V1"] + max(f["r_amplitude_V5"], f["r_amplitude_V6"])
    assert sl > 3.5
    assert sl == pytest.approx(fid.attrs["measurements"]["sokolow_lyon_mv"], abs=0.1)


def test_atrial_fibrillation():
    sig, fid = simulate_ecg(("AFIB",), noise=0.0, seed=3)
    f, missing = extract_features(sig, FS, fid)
    assert f["p_wave_ratio"] < 0.2
    assert f["rr_irregularity"] > 0.1
    assert np.isnan(f["pr_interval"]) and "P wave" in missing["pr_interval"]
    assert f["heart_rate"] == pytest.approx(fid.attrs["measurements"]["heart_rate"], abs=1)


def test_acute_anterior_mi_st_elevation():
    sig, fid = simulate_ecg(("AMI",), acute=True, noise=0.0, seed=3)
    f, _ = extract_features(sig, FS, fid)
    for lead in ("V2", "V3"):
        assert f[f"st_j60_{lead}"] > 0.1, lead
    assert f["q_amplitude_V2"] > 0.3  # QS / pathological Q in the infarct zone


def test_noisy_record_still_accurate_and_noise_measured(norm):
    sig, fid = simulate_ecg(("NORM",), noise=1.0, heart_rate=60, seed=1)
    f, missing = extract_features(sig, FS, fid)
    _check_complete(f, missing)
    clean, _, gt = norm
    assert f["heart_rate"] == pytest.approx(gt["heart_rate"], abs=1.0)
    assert f["qrs_axis"] == pytest.approx(gt["axis_deg"], abs=10)
    assert f["r_amplitude_V5"] == pytest.approx(clean["r_amplitude_V5"], abs=0.05)
    assert f["st_j60_II"] == pytest.approx(clean["st_j60_II"], abs=0.05)
    assert f["noise_level_II"] > clean["noise_level_II"]
    assert f["baseline_drift_II"] > clean["baseline_drift_II"]


def test_feature_table():
    t = feature_table()
    assert list(t.columns[:5]) == ["name", "key", "lead", "unit", "scope"]
    assert list(t["name"]) == feature_names()
    assert t["description"].str.len().min() > 0
    assert set(t.loc[t.scope == "lead", "unit"]) <= {f.unit for f in LEAD_FEATURES}
    assert t.set_index("name").loc["st_j60_V2", "unit"] == "mV"


def test_bad_shape_raises():
    sig, fid = handmade(duration=2.0)
    with pytest.raises(ValueError):
        extract_features(sig[:, :8], FS, fid)


def test_many_records_keep_failed_rows():
    from ecgkit.alfred.features import extract_features_many, feature_names
    from ecgkit.data.synthetic import simulate_ecg

    sig, fid = simulate_ecg(("NORM",), noise=0, seed=3)
    broken = fid.drop(columns=["qrs_on"])  # a delineation without QRS onsets cannot be measured
    table, failed = extract_features_many([sig, sig], 500, [fid, broken], ages=[50, 60], sexes=[0, 1],
                                          ids=["a", "b"], progress=False)
    assert list(table.index) == ["a", "b"] and list(table.columns) == feature_names()
    assert 40 < table.loc["a", "heart_rate"] < 150 and table.loc["a", "age"] == 50
    assert "b" in failed and table.loc["b"].isna().all()
