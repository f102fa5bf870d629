"""Noise at the electrodes (baseline wander, mains hum, muscle), so that Einthoven's and
Goldberger's relations hold."""
from __future__ import annotations

import numpy as np

from .geometry import derive12

def noise_levels(noise: float, baseline, mains, muscle) -> dict:
    return {"baseline": noise if baseline is None else baseline,
            "mains": noise if mains is None else mains,
            "muscle": noise if muscle is None else muscle}


def _to_leads(e: np.ndarray) -> np.ndarray:
    """Electrode potentials (9, n: RA, LA, LL, V1–V6) → I, II, V1–V6 (n, 8)."""
    ra, la, ll = e[0], e[1], e[2]
    wct = (ra + la + ll) / 3.0
    return np.column_stack([la - ra, ll - ra, (e[3:] - wct).T])


def electrode_noise(n: int, fs: float, rng: np.random.Generator, levels: dict,
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
    b12 = derive12(b8)
    stats = {"drift": b12.max(0) - b12.min(0), "static": derive12(h8).std(0)}
    return b8 + h8, stats
