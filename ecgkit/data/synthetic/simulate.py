"""One synthetic record on demand: chosen conditions, demographics, labs and noise."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import signal as sps

from ...vocabulary import LEADS
from .conditions import CONDITIONS, EXCLUSIVE, NORMAL_LABS
from .geometry import derive12
from .labels import label_record
from .morphology import patient_traits
from .noise import noise_levels
from .record import FIDUCIAL_COLUMNS, Plan, simulate_record
from .render import FS

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
    for group in EXCLUSIVE:
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
    traits = patient_traits(rng, float(age), int(sex), bmi)
    structural = {c: float(severity) for c in codes
                  if CONDITIONS[c].kind == "diagnostic" and c != "NORM"}
    rhythm = "AFIB" if "AFIB" in codes else "sinus"
    hr = heart_rate
    if hr is None:
        hr = next((_RHYTHM_HR[c] for c in codes if c in _RHYTHM_HR), None)
    if hr is None:
        hr = 85.0 if rhythm == "AFIB" else traits["hr"]
    true_labs = dict(NORMAL_LABS)
    true_labs.update(labs or {})
    rsa = 0.11 if "SARRH" in codes else traits["rsa"]
    lv = noise_levels(noise, baseline, mains, muscle)
    nz = {"baseline": 0.05 * lv["baseline"], "muscle": 0.006 * lv["muscle"],
          "mains": 0.01 * lv["mains"], "bursts": 0}
    plan = Plan(seed=(int(seed), 22), age=float(age), sex=int(sex), height=h, weight=w,
                traits=traits, conds=structural, rhythm=rhythm, hr=float(hr), rsa=float(rsa),
                acute=bool(acute), labs=true_labs, noise=nz, af_amp=0.05)
    sim = simulate_record(plan, duration=duration, fs=FS)
    codes_out, report, axis, _ = label_record(plan, sim["meas"])
    x = sim["clean8"] if sim["noise8"] is None else sim["clean8"] + sim["noise8"]
    sig12 = derive12(x)
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
