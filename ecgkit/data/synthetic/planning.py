"""The cohort plan: patients, their phenotypes, records, laboratory values and noise; folds."""
from __future__ import annotations

import numpy as np

from ...vocabulary import SUPERCLASSES
from .conditions import LAB_MISSING
from .morphology import patient_traits
from .record import Plan

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
    traits = patient_traits(rng, age0, sex, bmi)
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
            "plan": Plan(seed=(seed, 13, pid, v), age=float(age), sex=sex,
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


def cohort_plan(n_records: int, seed: int, noise: dict) -> list[dict]:
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


def folds(recs: list[dict], superclasses: list[set], seed: int) -> np.ndarray:
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
