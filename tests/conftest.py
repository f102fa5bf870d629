"""Shared fixtures: results and caches go to temporary folders; a tiny PTB-XL in native format."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb

#: The shared real PTB-XL subset (500 records), beside the checkout; tests use the ``shared_ptbxl`` fixture.
SHARED_PTBXL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ptbxl-500"
PTBXL_LEADS = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]


@pytest.fixture
def shared_ptbxl() -> Path:
    """The shared real PTB-XL subset; the test is skipped where the checkout has none beside it."""
    if not (SHARED_PTBXL / "ptbxl_database.csv").is_file():
        pytest.skip(f"the real PTB-XL subset is not at {SHARED_PTBXL}")
    return SHARED_PTBXL


@pytest.fixture(autouse=True)
def _results_to_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGKIT_RESULTS", str(tmp_path / "results"))


@pytest.fixture(autouse=True)
def _no_shared_measurement_cache(request, monkeypatch):
    """A test without a cache of its own (``tmp_cache``) computes ALFRED's measurements afresh
    and writes none into the user's cache (they would outlive a change to features or rules)."""
    if "tmp_cache" in request.fixturenames:
        return
    from ecgkit.alfred import pipeline

    monkeypatch.setattr(pipeline, "cached_measurement", lambda spec, compute, ids=None, label="": compute())


@pytest.fixture(scope="module")
def llm_dir():
    """The default local LLM's converted folder (resolved with $ECGKIT_LLM unset)."""
    from ecgkit import models

    saved = os.environ.pop("ECGKIT_LLM", None)
    try:
        yield models.llm_path()
    finally:
        if saved is not None:
            os.environ["ECGKIT_LLM"] = saved


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("ECGKIT_CACHE", str(path))
    return path


SCP = pd.DataFrame(
    {
        "description": ["normal ECG", "inferior MI", "left ventricular hypertrophy",
                        "complete left bundle branch block", "non-diagnostic T abnormalities",
                        "sinus rhythm", "atrial fibrillation", "low QRS voltages"],
        "diagnostic": [1.0, 1.0, 1.0, 1.0, 1.0, None, None, None],
        "form": [None, None, None, None, 1.0, None, None, 1.0],
        "rhythm": [None, None, None, None, None, 1.0, 1.0, None],
        "diagnostic_class": ["NORM", "MI", "HYP", "CD", "STTC", None, None, None],
        "diagnostic_subclass": ["NORM", "IMI", "LVH", "CLBBB", "STTC", None, None, None],
    },
    index=pd.Index(["NORM", "IMI", "LVH", "CLBBB", "NDT", "SR", "AFIB", "LVOLT"]),
)


def write_record(folder: Path, name: str, signal_mv: np.ndarray, fs: int, leads=PTBXL_LEADS):
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=fs, units=["mV"] * signal_mv.shape[1], sig_name=list(leads),
                p_signal=signal_mv.astype(np.float64), fmt=["16"] * signal_mv.shape[1],
                adc_gain=[1000.0] * signal_mv.shape[1], baseline=[0] * signal_mv.shape[1],
                write_dir=str(folder))


def make_ptbxl(root: Path, codes: list[dict], folds: list[int] | None = None, seed: int = 0) -> Path:
    """A PTB-XL folder with one record per entry of ``codes``, in the native layout."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, scp_codes in enumerate(codes, start=1):
        rows.append({
            "ecg_id": i, "patient_id": 100.0 + i // 2, "age": 50.0 + i, "sex": i % 2,
            "height": None, "weight": 70.0, "report": "sinusrhythmus", "scp_codes": repr(scp_codes),
            "strat_fold": (folds[i - 1] if folds else (i - 1) % 10 + 1),
            "filename_lr": f"records100/00000/{i:05d}_lr", "filename_hr": f"records500/00000/{i:05d}_hr",
        })
        for fs, suffix in ((100, "lr"), (500, "hr")):
            t = np.arange(10 * fs) / fs
            sig = 0.001 * np.round(1000 * (np.sin(2 * np.pi * (1 + i) * t)[:, None]
                                           * (np.arange(12) + 1)[None, :] / 10
                                           + 0.01 * rng.standard_normal((len(t), 12))))
            write_record(root / f"records{fs}" / "00000", f"{i:05d}_{suffix}", sig, fs)
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    SCP.to_csv(root / "scp_statements.csv")
    return root


@pytest.fixture
def tiny_ptbxl(tmp_path):
    codes = [
        {"NORM": 100.0, "SR": 0.0},
        {"IMI": 35.0, "LVH": 100.0, "SR": 0.0},
        {"CLBBB": 100.0, "AFIB": 0.0},
        {"NDT": 50.0, "LVOLT": 0.0},
        {"SR": 0.0},                      # rhythm only: no diagnostic label
        {"IMI": 15.0, "SR": 0.0},         # MI only below 50 % likelihood
    ]
    return make_ptbxl(tmp_path / "ptbxl", codes, folds=[1, 2, 8, 9, 10, 10])
