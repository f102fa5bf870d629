"""Measurement of a clean template beat, used to keep labels true to the signal: amplitudes are
adjusted until every label's criterion holds."""
from __future__ import annotations

import numpy as np

from .geometry import DOWER, derive12, rotation
from .morphology import Morph
from .render import FS, Beats, render

def template(m: Morph, rr: float, proj: np.ndarray = DOWER, rot: np.ndarray | None = None,
             fs: float = FS) -> tuple[np.ndarray, int, int]:
    """One clean beat (12 leads) with its QRS on/off sample; QRS onset at 0.4 s.

    ``proj`` is the record's lead projection (Dower with electrode gains), ``rot`` its rotation."""
    n = int(fs * (0.4 + rr + 0.3))
    bt = Beats(np.array([0.4]), np.array([rr]), np.array([0.4 - m.pr / 1000.0]),
               np.ones(1), np.ones(1), np.eye(3)[None])
    p, qrs, t, other, _ = render(m, bt, n, fs, np.eye(3) if rot is None else rot, None)
    ecg = derive12((p + qrs + t + other) @ proj.T)
    on = int(round(0.4 * fs))
    return ecg, on, int(round((0.4 + m.qrs_dur / 1000.0) * fs))


def sokolow(ecg: np.ndarray, on: int, off: int) -> float:
    q = ecg[on:off + 1]
    return float(-min(q[:, 6].min(), 0.0) + max(q[:, 10].max(), q[:, 11].max()))


def axis(ecg: np.ndarray, on: int, off: int) -> float:
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


def enforce(m: Morph, conds: dict, rr: float, proj: np.ndarray,
            rot: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Adjust amplitudes so that every label's criterion holds on the clean signal (in place).

    Returns the clean template beat of the final morphology."""
    main_late = [m.main] + ([3] if m.qrs_amp.shape[0] > 3 and "CLBBB" not in conds else [])
    check_axis = "LAFB" in conds or ("IMI" not in conds and "CLBBB" not in conds)
    q_checks = [(code, leads) for code, leads in
                (("IMI", [2, 5]), ("ASMI", [7, 8]), ("AMI", [7, 8, 9])) if code in conds]
    for _ in range(16):
        ecg, on, off = template(m, rr, proj, rot)
        changed = False
        sl = sokolow(ecg, on, off)
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
            ax = axis(ecg, on, off)
            step = -6.0 if "LAFB" in conds and ax > -50.0 else \
                6.0 if "LAFB" not in conds and ax < -40.0 else 0.0
            if step:
                r = rotation(0.0, 0.0, np.radians(step))  # turn about Z (frontal plane)
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
    return template(m, rr, proj, rot)
