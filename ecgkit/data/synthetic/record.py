"""One record: render it from its plan, place the ground-truth fiducials and measure it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .criteria import axis, enforce, sokolow
from .geometry import DOWER, derive12, rotation
from .morphology import Morph, morphology
from .noise import electrode_noise
from .render import DURATION, FS, af_waves, beats, render
from .write import digital

#: The fiducial points per beat (and lead), in samples.
FIDUCIAL_COLUMNS = ("p_on", "p_peak", "p_off", "qrs_on", "r_peak", "qrs_off", "t_peak", "t_off")


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
class Plan:
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


def simulate_record(plan: Plan, duration: float = DURATION, fs: float = FS) -> dict:
    """Render one record: clean and noise 8-lead signals (mV), fiducials and measurements."""
    n = int(round(duration * fs))
    ss = np.random.SeedSequence(list(plan.seed))
    r_beats, r_rot, r_noise, r_af = (np.random.default_rng(s) for s in ss.spawn(4))
    tr = plan.traits
    m = morphology(tr, plan.conds, plan.labs, plan.acute)
    rr_mean = 60.0 / plan.hr
    rec_rot = rotation(*np.radians(r_rot.normal(0.0, 2.5, 3)))
    gain = np.concatenate([[1.0, 1.0], tr["precordial_gain"] * np.exp(r_rot.normal(0, 0.03, 6))])
    proj = DOWER * gain[:, None]  # electrode placement: precordial gains differ a little
    template = enforce(m, plan.conds, rr_mean, proj, rec_rot)
    bt = beats(m, plan.rhythm, plan.hr, tr, r_beats, duration, plan.rsa)
    af = {"signal": af_waves(n, fs, r_af, plan.af_amp)} if plan.rhythm == "AFIB" else None
    p, qrs, t, other, tim = render(m, bt, n, fs, rec_rot, af)
    clean8 = (p + qrs + t + other) @ proj.T
    noise8, nstats = electrode_noise(n, fs, r_noise, plan.noise, tr["resp"]) if any(
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
    clean12 = digital(clean8).astype(float) / 1000.0  # what a clean record's file holds
    g = {"p_on": p_on, "p_off": p_off, "qrs_on": qrs_on, "qrs_off": qrs_off, "t_off": t_off}
    g["r_peak"] = _global_peak(qrs, qrs_on, qrs_off)
    g["p_peak"] = np.where(p_ok, _global_peak(p, np.where(p_ok, p_on, -1), p_off), -1)
    g["t_peak"] = np.where(t_ok, _global_peak(t, np.where(t_ok, qrs_off, -1), t_off), -1)
    lead = {
        "r_peak": _peaks(clean12, qrs_on, qrs_off, derive12(qrs @ proj.T)),
        "p_peak": _peaks(clean12, np.where(p_ok, p_on, -1), p_off, derive12(p @ proj.T)),
        "t_peak": _peaks(clean12, np.where(t_ok, qrs_off, -1), t_off, derive12(t @ proj.T)),
    }
    meas = _measure(m, g, fs, plan, rr_mean, template)
    return {"clean8": clean8, "noise8": noise8, "noise_stats": nstats, "global": g, "lead": lead, "meas": meas,
            "morph": m}


def _measure(m: Morph, g: dict, fs: float, plan: Plan, rr_mean: float, template) -> dict:
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
        "axis_deg": axis(ecg, on, off), "sokolow_lyon_mv": sokolow(ecg, on, off),
        "limb_qrs_max_mv": limb_pp,
        "t_amp_v3_mv": float(ecg[off:, 8][np.argmax(np.abs(ecg[off:, 8]))]),
        "t_amp_ii_mv": float(ecg[off:, 1][np.argmax(np.abs(ecg[off:, 1]))]),
    }
