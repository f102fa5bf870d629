"""Rendering: beat times and their variability, and the P, QRS, T (+U, ST) waves of every beat
as a dipole signal; fibrillatory waves."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from .geometry import rotations_z, unit
from .morphology import EDGE, Morph

#: Records are rendered at FS Hz for DURATION seconds (the 100 Hz copies are decimated).
FS = 500
DURATION = 10.0


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


def _t_sigma(m: Morph, rr: float) -> float:
    """Width (s) of the descending limb of T for a beat at RR ``rr`` s."""
    qt = m.qtc * np.sqrt(rr) + m.qt_extra
    return float(np.clip(0.125 * (qt - m.qrs_dur), 22.0, 75.0) * m.t_sig_scale) / 1000.0


@dataclass
class Beats:
    qrs_on: np.ndarray      # s
    rr_prev: np.ndarray     # s
    p_on: np.ndarray        # s, nan where no P
    qrs_scale: np.ndarray
    t_scale: np.ndarray
    rot: np.ndarray         # (b, 3, 3)


def beats(m: Morph, rhythm: str, hr: float, tr: dict, rng: np.random.Generator,
          duration: float, rsa: float) -> Beats:
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
    rot = rotations_z(np.radians(3.0 * resp))
    if rhythm == "AFIB":
        p_on = np.full(b, np.nan)
    else:
        p_on = onsets - (m.pr + 3.0 * rng.standard_normal(b)) / 1000.0
    return Beats(onsets, rr_prev, p_on, qrs_scale, t_scale, rot)


def render(m: Morph, bt: Beats, n: int, fs: float, rec_rot: np.ndarray, af: dict | None):
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
    mu_t = t_off - EDGE * ts
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


def af_waves(n: int, fs: float, rng: np.random.Generator, amp: float) -> np.ndarray:
    """Fibrillatory atrial activity (4–9 Hz, drifting frequency and amplitude) as a dipole."""
    t = np.arange(n) / fs
    out = np.zeros((n, 3))
    for d, rel in ((unit(140.0, -37.0), 1.0), (unit(60.0, 10.0), 0.45)):
        f0 = rng.uniform(5.0, 7.5)
        f = f0 + 0.7 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + rng.uniform(0, 6.3))
        ph = 2 * np.pi * np.cumsum(f) / fs + rng.uniform(0, 6.3)
        a = amp * rel * (1.0 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t
                                              + rng.uniform(0, 6.3)))
        w = a * (np.sin(ph) + 0.35 * np.sin(2 * ph + rng.uniform(0, 6.3)))
        out += w[:, None] * d[None, :]
    return out
