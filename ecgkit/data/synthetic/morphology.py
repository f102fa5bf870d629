"""A patient's stable traits and the morphology of one record (waves, axis, intervals), from
the conditions and electrolytes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import unit

EDGE = 2.5  # a wave starts/ends where its outermost Gaussian is at exp(-2.5²/2) = 4.4 %


def patient_traits(rng: np.random.Generator, age: float, sex: int, bmi: float) -> dict:
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
class Morph:
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
    lo = float(np.min(mu - EDGE * sig))
    hi = float(np.max(mu + EDGE * sig))
    s = dur / (hi - lo)
    return (mu - lo) * s, sig * s


def _project_out(v: np.ndarray, u: np.ndarray, c: float) -> np.ndarray:
    """Remove ``c`` times the component of ``v`` along unit ``u`` (c = 2 mirrors it)."""
    return v - c * float(v @ u) * u


def morphology(tr: dict, conds: dict, labs: dict, acute: bool) -> Morph:
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
        unit(th_s, ph_s) * a_s,
        unit(theta + th_e, ph_e) * a_e * M,
        unit(theta, phi) * M,
        unit(th_l, ph_l) * a_l * M,
    ])
    main = 2
    t_vec = unit(theta + tr["t_theta"], tr["t_phi"]) * tr["t_amp"]
    st_vec = np.zeros(3)
    st_down = 0.0
    qt_extra = 0.0

    if "IMI" in conds:
        s = conds["IMI"]
        amp[0:2, 1] = -np.abs(amp[0:2, 1]) * 0.5            # no early inferior forces
        amp[main, 1] = np.where(amp[main, 1] > 0, amp[main, 1] * 0.45, amp[main, 1])
        mu = np.append(mu, 16.0)
        sig = np.append(sig, 9.5)
        amp = np.vstack([amp, unit(-90.0 + 10.0 * (s - 0.5), 0.0) * (0.35 + 0.35 * s)])
        if acute:
            st_vec += unit(90.0, 0.0) * (0.12 + 0.2 * s)
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
            amp = np.vstack([amp, unit(*direction) * (strength + 0.3 * s)])
            if acute:
                st_vec += unit(20.0, -75.0) * (0.15 + 0.2 * s)
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
        amp = np.array([unit(th + 5.0, 35.0) * 0.8 * ml, unit(th, 75.0) * 0.7 * ml,
                        unit(th - 10.0, 40.0) * ml])
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
        amp = np.vstack([amp, unit(180.0 + 12.0 * (s - 0.5), -40.0) * term_amp])
        if complete:
            qrs_dur = max(qrs_dur + 30.0, 124.0) + 28.0 * s
            t_vec[2] += 0.25 + 0.1 * s
            st_vec += np.array([0.0, 0.0, 0.05])
        else:
            qrs_dur = min(max(qrs_dur + 12.0, 100.0) + 10.0 * s, 116.0)
        qt_extra = 0.5 * (qrs_dur - base_dur)

    if "LVH" in conds and conds["LVH"] > 0.45:  # strain
        s = conds["LVH"]
        d = unit(theta, phi)
        t_vec = _project_out(t_vec, d, 1.5 + 1.6 * (s - 0.45))
        st_vec += -d * (0.05 + 0.2 * (s - 0.45))
        st_down = max(st_down, 0.8)
    for code, u, c0 in (("ISC_", unit(35.0, 0.0), 1.0), ("ISCAL", unit(0.0, -25.0), 1.2),
                        ("ISCIN", unit(90.0, 0.0), 1.2)):
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
    p_amp = np.array([unit(tr["p_theta"], -30.0) * pa, unit(10.0, 15.0) * pa * 0.75])
    p_dur = tr["p_dur"]
    pr = tr["pr"]
    if "LAO/LAE" in conds:
        s = conds["LAO/LAE"]
        p_amp[1] = unit(5.0, 40.0) * pa * (1.9 + 0.8 * s)
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
    return Morph(mu, sig, amp, qrs_dur, p_mu, p_sig, p_amp, p_dur, pr, t_vec, t_sig_scale,
                 u_vec, st_vec, st_down, qtc, qt_shift, qt_extra, main)
