"""MIMIC-IV-ECG (diagnostic electrocardiogram matched subset) in its PhysioNet layout.

- ``record_list.csv``: ``subject_id, study_id, file_name, ecg_time, path`` with ``path`` like
  ``files/p1000/p10000032/s40689238/40689238`` (the WFDB record, relative to the folder);
- ``machine_measurements.csv``: ``subject_id, study_id, cart_id, ecg_time, report_0`` …
  ``report_17``, ``bandwidth, filtering, rr_interval, p_onset, p_end, qrs_onset, qrs_end,
  t_end, p_axis, qrs_axis, t_axis`` (the machine's statements and intervals);
- WFDB records: ``.hea`` + ``.dat``, 500 Hz, 10 s, 12 leads in the order
  I, II, III, aVR, aVF, aVL, V1–V6 (reordered here to :data:`LEADS`).

Records are indexed by ``study_id``. ``meta`` carries the record list, the machine measurements
and ``report``, the non-empty machine statements joined with ``". "``. There are no labels.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .dataset import ECGDataset
from .errors import RecordError
from .bulk import collect_records, prepare_record
from .preprocess import window_samples
from .wfdb_io import LEADS, read_wfdb

MIMIC_FS = 500.0
MIMIC_SECONDS = 10.0
#: the lead order of the MIMIC-IV-ECG files (note aVF before aVL)
MIMIC_LEADS = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")
REPORT_COLUMNS = tuple(f"report_{i}" for i in range(18))

__all__ = ["MIMIC_FS", "MIMIC_SECONDS", "MIMIC_LEADS", "REPORT_COLUMNS", "join_report",
           "read_mimic_tables", "load_mimic_ecg"]


def join_report(lines) -> str:
    """Join the non-empty machine statements with ``". "`` (a trailing period is not doubled)."""
    parts = []
    for line in lines:
        if line is None or (isinstance(line, float) and np.isnan(line)):
            continue
        text = str(line).strip()
        if not text or text.lower() == "nan":
            continue
        parts.append(text[:-1].rstrip() if text.endswith(".") else text)
    return ". ".join(p for p in parts if p)


def read_mimic_tables(path: str | os.PathLike, study_ids=None) -> pd.DataFrame:
    """``record_list.csv`` joined with ``machine_measurements.csv`` (when present), indexed by
    ``study_id``, with a ``report`` column; ``study_ids`` keeps only those studies (KeyError for
    one that is not listed)."""
    path = Path(path)
    rec_file = path / "record_list.csv"
    if not rec_file.is_file():
        raise FileNotFoundError(f"{rec_file} is missing: not a MIMIC-IV-ECG folder")
    records = pd.read_csv(rec_file)
    need = {"subject_id", "study_id", "path"}
    if not need <= set(records.columns):
        raise ValueError(f"{rec_file} lacks columns {sorted(need - set(records.columns))}")
    records = records.drop_duplicates("study_id").set_index("study_id")
    if study_ids is not None:
        wanted = [int(r) for r in study_ids]
        unknown = sorted(set(wanted) - set(records.index))
        if unknown:
            raise KeyError(f"study_id(s) {unknown[:10]} are not in {rec_file}")
        records = records.loc[wanted]
    mm_file = path / "machine_measurements.csv"
    if mm_file.is_file():
        mm = pd.read_csv(mm_file, low_memory=False).drop_duplicates("study_id").set_index("study_id")
        mm = mm[mm.index.isin(records.index)]
        report_cols = [c for c in REPORT_COLUMNS if c in mm.columns]
        mm["report"] = [join_report(row) for row in mm[report_cols].itertuples(index=False, name=None)] \
            if report_cols else ""
        mm = mm.drop(columns=[c for c in ("subject_id", "ecg_time") if c in records.columns and c in mm.columns])
        meta = records.join(mm, how="left")
    else:
        meta = records.copy()
        meta["report"] = np.nan
    if "ecg_time" in meta.columns:
        meta["ecg_time"] = pd.to_datetime(meta["ecg_time"], errors="coerce")
    meta.index.name = "study_id"
    return meta


def load_mimic_ecg(path: str | os.PathLike, fs: float | None = None, seconds: float | None = None,
                   n_samples: int | None = None, records=None, strict: bool = False,
                   source_fs: float | None = MIMIC_FS, crop: str = "start", nan: str = "skip",
                   max_gap: int = 10, progress: bool = True, name: str = "mimic-iv-ecg",
                   rng=None) -> ECGDataset:
    """Load MIMIC-IV-ECG from ``path`` (the folder holding ``record_list.csv`` and ``files/``).

    - ``fs``: resample to this rate on load (the source is 500 Hz).
    - ``source_fs``: the expected header rate (500); a header that disagrees is a bad record.
      ``None`` accepts any rate, which then needs ``fs`` so the dataset has one rate.
    - ``seconds`` / ``n_samples``: crop or zero-pad to a fixed window (at the output rate) with
      ``crop``; without one, records of different lengths come as a list of arrays.
    - ``records``: restrict to these ``study_id`` values.
    - ``nan``: ``"skip"`` (MIMIC-IV-ECG has some records with NaN stretches) or ``"fill"``
      (interpolate gaps up to ``max_gap`` source samples, skip longer ones).
    - ``strict``: raise :class:`RecordError` instead of skipping a bad record (missing or
      truncated file, lead count or rate that disagrees, NaNs).
    """
    path = Path(path)
    if source_fs is None and fs is None:
        raise ValueError("with source_fs=None records may differ in rate: pass fs= to resample them")
    meta_all = read_mimic_tables(path, study_ids=records)
    ids = list(meta_all.index)
    out_fs = float(fs) if fs is not None else float(source_fs)
    window = window_samples(out_fs, seconds, n_samples)

    def read_one(study_id):
        rec = f"study {study_id}"
        rel = meta_all.at[study_id, "path"]
        if not isinstance(rel, str) or not rel.strip():
            raise RecordError(rec, "record_list.csv gives no path")
        sig, fs_src, _ = read_wfdb(path / rel.strip(), fs=source_fs, n_leads=len(LEADS),
                                   record=rec, allow_nan=True)
        n_src = sig.shape[0]
        sig = prepare_record(sig, fs_src, rec, fs=fs, n_samples=window, crop=crop, nan=nan,
                             max_gap=max_gap, rng=rng)
        return sig, {"fs_source": fs_src, "n_samples_source": n_src}

    kept, signals, metas, skipped = collect_records(
        ids, read_one, name=name, strict=strict, n_samples=window, progress=progress,
        desc=f"reading {name}", record_name=str)
    meta = meta_all.loc[kept].copy() if kept else meta_all.iloc[:0].copy()
    meta["fs_source"] = [m["fs_source"] for m in metas]
    meta["n_samples_source"] = [m["n_samples_source"] for m in metas]
    return ECGDataset(name=name, signals=signals, fs=out_fs, meta=meta, labels=None,
                      skipped=skipped, leads=LEADS)
