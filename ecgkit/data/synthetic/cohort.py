"""Writing a synthetic cohort in PTB-XL layout, and the cached cohort per size and seed.

Files written by :func:`make_synthetic_ptbxl` (PTB-XL layout, so the PTB-XL reader loads it):

``records500/00000/00001_hr.{hea,dat}``, ``records100/00000/00001_lr.{hea,dat}``
    WFDB format 16 (little-endian int16), gain 1000 adu/mV (1 µV steps), baseline 0, units mV,
    10 s, leads ``I II III AVR AVL AVF V1 … V6`` as in PTB-XL's headers. Folders hold 1000
    records (ecg_id 1–999 in ``00000``, 1000–1999 in ``01000``, …). The 100 Hz copies are the
    500 Hz signal decimated by 5 with an anti-aliasing polyphase FIR (``scipy.signal.resample_poly``).
``ptbxl_database.csv``
    PTB-XL's 28 columns (``ecg_id`` first): ``patient_id`` (float), ``age``, ``sex`` (0 = male,
    1 = female), ``height`` (cm), ``weight`` (kg), ``report`` (machine-style English text),
    ``scp_codes`` (a Python-dict string such as ``"{'NORM': 100.0, 'SR': 0.0}"``), ``heart_axis``
    (MID, LAD, ALAD, RAD, ARAD), ``infarction_stadium1`` (``Stadium I`` acute, ``Stadium III``
    old), ``strat_fold`` (1–10), ``filename_lr``, ``filename_hr``, … (``baseline_drift`` and
    ``static_noise`` name the leads with drift over 0.8 mV peak-to-peak or mains + muscle noise
    over 0.03 mV rms, ``burst_noise`` marks muscle bursts, as PTB-XL's columns do).
``scp_statements.csv``
    The statements used, indexed by code, with PTB-XL's columns ``description, diagnostic, form,
    rhythm, diagnostic_class, diagnostic_subclass, Statement Category`` (flags are 1.0 or empty).
``labs.csv``
    ``ecg_id`` and the laboratory values and vitals of :data:`LAB_UNITS` (units there); some
    values are missing (empty) at the rates of :data:`LAB_MISSING`.
``fiducials.csv.gz``
    Ground truth in samples at 500 Hz (divide by 5 for the 100 Hz copies), columns
    ``ecg_id, lead, beat, p_on, p_peak, p_off, qrs_on, r_peak, qrs_off, t_peak, t_off``.
    For every beat whose QRS lies wholly inside the record there is one row with
    ``lead == "all"`` (the wave boundaries of the dipole; peaks where the spatial magnitude of
    the P, QRS and T loops is largest) and one row per lead (``I … V6``) with the same
    boundaries and lead-specific peaks: the wave's largest deflection in that lead, placed on
    the nearest local extremum of the clean (noise-free) lead in the same direction (the R
    wave where QRS is upright, the S/QS wave where it is negative). Boundaries are
    where the outermost Gaussian of the wave falls to 4.4 % (2.5 σ). -1 marks a wave that is
    absent (P in atrial fibrillation) or not wholly inside the record.
``ground_truth.csv``
    Per-record quantities measured on the clean signal and its fiducials (heart rate, PR, QRS,
    QT, QTc (Bazett), axis, Sokolow-Lyon voltage, …) and the noise levels used.
``README.md``, ``synthetic.json``
    What this folder is, and the parameters it was made with.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import signal as sps

from ...config import cache_dir
from ...versions import VERSIONS
from ...vocabulary import LAB_UNITS, LEADS
from .conditions import CONDITIONS, scp_statements
from .labels import label_record
from .noise import noise_levels
from .planning import cohort_plan, folds
from .record import FIDUCIAL_COLUMNS, Plan, simulate_record
from .render import DURATION
from .write import HEADER_LEADS, digital, record_paths, write_gzip_csv, write_wfdb

#: Bump when the generator changes what it writes (part of the cache key).
GENERATOR_VERSION = VERSIONS["synthetic"]
#: The generator's name as version 1 writes it into synthetic.json and README.md (the module it
#: was then); part of the output, so renaming it needs a version bump.
_WRITTEN_NAME = "ecgkit.synthetic"


def _leads_text(levels: np.ndarray, thr: float) -> str | float:
    bad = [HEADER_LEADS[i] for i in np.where(levels > thr)[0]]
    if not bad:
        return np.nan
    return "alles" if len(bad) == 12 else ", " + ",".join(bad)


def _noise_columns(stats: dict | None, plan: Plan) -> dict:
    """PTB-XL's noise columns: the leads with strong drift (> 0.5 mV) or static noise."""
    if stats is None:
        return {"baseline_drift": np.nan, "static_noise": np.nan, "burst_noise": np.nan}
    return {"baseline_drift": _leads_text(stats["drift"], 0.8),
            "static_noise": _leads_text(stats["static"], 0.03),
            "burst_noise": ("alles" if plan.noise.get("bursts", 0) and plan.noise["muscle"] > 0.004
                            else np.nan)}


def _make_record(item: dict, out: Path, rates: tuple) -> tuple[dict, dict, np.ndarray, dict]:
    plan: Plan = item["plan"]
    sim = simulate_record(plan)
    meas = sim["meas"]
    codes, report, axis, extra = label_record(plan, meas, item["norm_lik"])
    x = sim["clean8"] if sim["noise8"] is None else sim["clean8"] + sim["noise8"]
    ecg_id = item["ecg_id"]
    lr, hr = record_paths(ecg_id)
    if 500 in rates:
        (out / hr).parent.mkdir(parents=True, exist_ok=True)
        write_wfdb(out / hr, digital(x), 500)
    if 100 in rates:
        (out / lr).parent.mkdir(parents=True, exist_ok=True)
        x100 = sps.resample_poly(x, 1, 5, axis=0, padtype="line")
        write_wfdb(out / lr, digital(x100), 100)
    # fiducials block: (1 + 12) rows per beat
    g, lead = sim["global"], sim["lead"]
    nb = g["qrs_on"].size
    block = np.empty((nb * 13, 11), dtype=np.int64)
    block[:, 0] = ecg_id
    block[:, 1] = np.repeat(np.arange(13), nb)            # 0 = all, 1..12 = leads
    block[:, 2] = np.tile(np.arange(nb), 13)
    for j, col in enumerate(FIDUCIAL_COLUMNS):
        if col in lead:
            vals = np.concatenate([g[col][None, :], lead[col].T], axis=0)
            if col == "p_peak":
                vals = np.where(g["p_on"][None, :] >= 0, vals, -1)
            if col == "t_peak":
                vals = np.where(g["t_off"][None, :] >= 0, vals, -1)
            block[:, 3 + j] = vals.ravel()
        else:
            block[:, 3 + j] = np.tile(g[col], 13)
    date = (pd.Timestamp("1989-01-02") + pd.Timedelta(days=int(item["t_day"]))).strftime("%Y-%m-%d")
    stadium = np.nan
    if any(c in codes for c in ("IMI", "AMI", "ASMI")):
        stadium = "Stadium I" if plan.acute else "Stadium III"
    hmiss, wmiss = item["hw_missing"]
    row = {
        "ecg_id": ecg_id, "patient_id": item["patient_id"], "age": float(round(plan.age)),
        "sex": plan.sex, "height": np.nan if hmiss else float(round(plan.height)),
        "weight": np.nan if wmiss else float(round(plan.weight)), "nurse": item["nurse"],
        "site": item["site"], "device": "ecgkit-synthetic",
        "recording_date": f"{date} {item['hour']:02d}:{item['minute']:02d}:{item['second']:02d}",
        "report": report, "scp_codes": str(codes), "heart_axis": axis,
        "infarction_stadium1": stadium, "infarction_stadium2": np.nan, "validated_by": 1.0,
        "second_opinion": False, "initial_autogenerated_report": False,
        "validated_by_human": True, **_noise_columns(sim["noise_stats"], plan),
        "electrodes_problems": np.nan, "extra_beats": np.nan, "pacemaker": np.nan,
        "strat_fold": 0,
        "filename_lr": lr if 100 in rates else np.nan, "filename_hr": hr if 500 in rates else np.nan,
    }
    labs = {"ecg_id": ecg_id}
    for col in LAB_UNITS:
        v = meas["heart_rate"] + np.random.default_rng([*plan.seed, 7]).normal(0, 1.5) \
            if col == "heart_rate" else plan.labs[col]
        labs[col] = np.nan if item["missing"][col] else float(round(v, _LAB_DECIMALS[col]))
    truth = {"ecg_id": ecg_id, "patient_id": item["patient_id"], "phenotype": item["phenotype"],
             "rhythm": extra["rhythm"], **{k: round(v, 4) if isinstance(v, float) else v
                                           for k, v in meas.items()},
             "acute_mi": plan.acute, "baseline_mv": round(plan.noise["baseline"], 5),
             "muscle_mv": round(plan.noise["muscle"], 5), "mains_mv": round(plan.noise["mains"], 5)}
    return row, labs, block, truth


_LAB_DECIMALS = {"potassium": 1, "calcium": 2, "magnesium": 2, "troponin": 0, "nt_probnp": 0,
                 "creatinine": 0, "haemoglobin": 0, "heart_rate": 0, "sbp": 0, "dbp": 0, "spo2": 0}
_DB_COLUMNS = ["ecg_id", "patient_id", "age", "sex", "height", "weight", "nurse", "site", "device",
               "recording_date", "report", "scp_codes", "heart_axis", "infarction_stadium1",
               "infarction_stadium2", "validated_by", "second_opinion",
               "initial_autogenerated_report", "validated_by_human", "baseline_drift",
               "static_noise", "burst_noise", "electrodes_problems", "extra_beats", "pacemaker",
               "strat_fold", "filename_lr", "filename_hr"]


def _work(args):
    items, out, rates = args
    return [_make_record(it, Path(out), rates) for it in items]


def make_synthetic_ptbxl(out_dir: str | os.PathLike, n_records: int = 1000, seed: int = 0,
                         noise: float = 1.0, rates: tuple = (100, 500), progress: bool = True, *,
                         baseline: float | None = None, mains: float | None = None,
                         muscle: float | None = None, workers: int | None = None) -> Path:
    """Write a synthetic cohort in PTB-XL layout to ``out_dir`` and return it.

    ``noise`` scales every noise source (0 = clean signals); ``baseline``, ``mains`` and
    ``muscle`` override the scale of one source. Output is byte-identical for the same arguments
    (``workers``, the number of processes, does not change it; default: 2 where there are
    2 CPUs and at least 400 records, else 1).
    """
    if n_records < 1:
        raise ValueError("n_records must be at least 1")
    if int(seed) < 0:
        raise ValueError("seed must be ≥ 0")
    rates = tuple(sorted({int(r) for r in rates}))
    if not set(rates) <= {100, 500} or not rates:
        raise ValueError(f"rates must be a non-empty subset of (100, 500), got {rates}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    levels = noise_levels(noise, baseline, mains, muscle)
    if any(v < 0 for v in levels.values()):
        raise ValueError("noise levels must be ≥ 0")
    recs = cohort_plan(n_records, seed, levels)
    chunk = 50
    jobs = [(recs[i:i + chunk], str(out), rates) for i in range(0, len(recs), chunk)]
    if workers is None:  # processes pay off for big cohorts only (each one imports ecgkit)
        workers = min(2, os.cpu_count() or 1) if len(recs) >= 400 else 1
    workers = max(1, int(workers))
    results = []
    bar = _progress(len(recs), progress)
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp
        # "spawn": safe even when the caller has threads running (torch, a notebook kernel)
        with mp.get_context("spawn").Pool(workers) as pool:
            for res in pool.imap(_work, jobs):
                results.extend(res)
                bar.update(len(res))
    else:
        for job in jobs:
            res = _work(job)
            results.extend(res)
            bar.update(len(res))
    bar.close()
    rows, labs, blocks, truth = zip(*results)
    db = pd.DataFrame(list(rows))[_DB_COLUMNS]
    supers = []
    for s in db["scp_codes"]:
        codes = ast.literal_eval(s)
        supers.append({CONDITIONS[c].superclass for c in codes if CONDITIONS[c].superclass})
    db["strat_fold"] = folds(recs, supers, seed)
    db.to_csv(out / "ptbxl_database.csv", index=False)
    scp_statements().to_csv(out / "scp_statements.csv")
    pd.DataFrame(list(labs)).to_csv(out / "labs.csv", index=False)
    gt = pd.DataFrame(list(truth))
    gt.insert(2, "strat_fold", db["strat_fold"].values)
    gt.to_csv(out / "ground_truth.csv", index=False)
    fid = np.concatenate(blocks)
    names = np.array(["all", *LEADS])
    fdf = pd.DataFrame(fid[:, 3:], columns=list(FIDUCIAL_COLUMNS))
    fdf.insert(0, "beat", fid[:, 2])
    fdf.insert(0, "lead", names[fid[:, 1]])
    fdf.insert(0, "ecg_id", fid[:, 0])
    write_gzip_csv(fdf, out / "fiducials.csv.gz")
    meta = {"generator": _WRITTEN_NAME, "version": GENERATOR_VERSION,
            "n_records": n_records, "n_patients": int(db["patient_id"].nunique()), "seed": seed,
            "noise": noise, "levels": levels, "rates": list(rates), "duration_s": DURATION}
    (out / "synthetic.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    (out / "README.md").write_text(_readme(meta))
    return out


def _progress(total: int, enabled: bool):
    try:
        from tqdm import tqdm
        return tqdm(total=total, disable=not enabled, desc="synthetic ECGs", unit="rec")
    except ImportError:  # pragma: no cover
        class _Null:
            def update(self, *_):
                pass

            def close(self):
                pass
        return _Null()


def _readme(meta: dict) -> str:
    doc = __doc__.split("Files written by", 1)[1]
    return (f"# Synthetic PTB-XL cohort ({_WRITTEN_NAME}, generator version {meta['version']})\n\n"
            f"{meta['n_records']} records of {meta['n_patients']} synthetic patients, seed "
            f"{meta['seed']}, noise scale {meta['noise']}. Not real patients: every signal comes "
            f"from a dipole model of the heart (see the {_WRITTEN_NAME} module).\n\n"
            "Files written by" + doc + "\nLaboratory units: "
            + ", ".join(f"{k} [{v}]" for k, v in LAB_UNITS.items()) + ".\n")


def synthetic_cohort(n_records: int = 1000, seed: int = 0, noise: float = 1.0,
                     progress: bool = True) -> Path:
    """The cohort for these arguments, generated once under the ecgkit cache and reused.

    It is written to a temporary folder next to its place and renamed into place only when
    complete, so an interrupted run never leaves half a cohort behind.
    """
    key = f"v{GENERATOR_VERSION}-n{int(n_records)}-seed{int(seed)}-noise{float(noise):g}"
    root = cache_dir("synthetic")
    final = root / key
    if (final / "synthetic.json").is_file():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        make_synthetic_ptbxl(tmp, n_records=n_records, seed=seed, noise=noise, progress=progress)
        if final.exists() and not (final / "synthetic.json").is_file():
            shutil.rmtree(final, ignore_errors=True)  # an empty or partial folder: not a cohort
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / "synthetic.json").is_file():  # lost a race with nobody: re-raise
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def main(argv=None) -> int:
    """``ecgkit synth``: write a synthetic PTB-XL cohort."""
    ap = argparse.ArgumentParser(prog="ecgkit synth", description=main.__doc__)
    ap.add_argument("--out", type=Path, default=None,
                    help="folder to write (default: the cached cohort under ECGKIT_CACHE)")
    ap.add_argument("--n", type=int, default=1000, help="number of records (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=1.0, help="noise scale, 0 = clean (default 1)")
    ap.add_argument("--rates", type=int, nargs="+", default=[100, 500], choices=[100, 500])
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    if a.out is None:
        path = synthetic_cohort(a.n, a.seed, a.noise, progress=not a.no_progress)
    else:
        path = make_synthetic_ptbxl(a.out, a.n, a.seed, a.noise, rates=tuple(a.rates),
                                    progress=not a.no_progress, workers=a.workers)
    print(f"{a.n} synthetic records in {path} ({time.perf_counter() - t0:.1f} s)")
    return 0
