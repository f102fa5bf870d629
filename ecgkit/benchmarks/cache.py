"""Signal cache vs a plain ``wfdb.rdsamp`` loop over the same records (what a user would write)."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from ..config import ptbxl_dir
from ..data.ptbxl import load_ptbxl


def _default_source() -> Path:
    path = ptbxl_dir()
    if path is None:
        shared = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ptbxl-500"
        path = shared if (shared / "ptbxl_database.csv").is_file() else None
    if path is None:
        from ..data.synthetic import synthetic_cohort
        path = synthetic_cohort(n_records=500, seed=0)
    return path


def run(path=None, rates=(100, 500), repeats: int = 3) -> dict:
    """The benchmark at each rate, as one flat dict (``source``: the folder's name, not its path)."""
    out = {}
    for rate in rates:
        for k, v in run_rate(path, rate, repeats).items():
            out[k if k in ("benchmark", "source", "records", "goal") else f"{k}@{rate}Hz"] = v
    return out


def run_rate(path=None, rate: int = 100, repeats: int = 3) -> dict:
    """Seconds to get all signals as one array: rdsamp loop, cold cache (first read), warm cache."""
    path = Path(path) if path else _default_source()
    meta = pd.read_csv(path / "ptbxl_database.csv", index_col="ecg_id")
    files = [str(path / f) for f in meta["filename_lr" if rate == 100 else "filename_hr"]]

    def rdsamp_loop():
        return np.stack([wfdb.rdsamp(f)[0] for f in files]).astype(np.float32)

    def best(fn):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = fn()
            float(np.asarray(out).sum())  # touch every sample: a lazy memmap must be read too
            times.append(time.perf_counter() - t)
        return min(times)

    t_rdsamp = best(rdsamp_loop)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        np.asarray(load_ptbxl(path, rate, progress=False, cache_root=tmp).signals).sum()
        t_cold = time.perf_counter() - t
        t_warm = best(lambda: load_ptbxl(path, rate, progress=False, cache_root=tmp).signals)
    return {"benchmark": "signal cache vs wfdb.rdsamp loop", "source": path.name, "records": len(files),
            "rdsamp_s": t_rdsamp, "cold_cache_s": t_cold, "warm_cache_s": t_warm,
            "speedup_warm": t_rdsamp / t_warm, "goal": "warm ≥ 50× faster"}
