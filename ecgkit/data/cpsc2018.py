"""CPSC 2018 / ICBEB 2018 in its native layout: ``A0001.mat`` files plus ``REFERENCE.csv``.

Each ``.mat`` file (MATLAB v5) holds one struct ``ECG`` with fields ``sex`` (``'Male'`` or
``'Female'``), ``age`` (years, ``NaN`` for a few records) and ``data`` (12 × samples, mV,
500 Hz, leads I II III aVR aVL aVF V1–V6). ``REFERENCE.csv`` has the columns
``Recording,First_label,Second_label,Third_label`` with classes numbered 1–9 (see
:data:`CPSC_CLASSES`); the training set (6,877 records, 6–60 s) comes split in
``TrainingSet1``–``3`` folders, so files are searched recursively.

The CinC 2020/2021 challenges re-released these recordings as WFDB ``.hea``/``.mat`` pairs with
SNOMED CT labels: read that version with :func:`ecgkit.data.cinc2021.load_cinc2021`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io

from .dataset import ECGDataset, parse_age, parse_sex
from .errors import RecordError
from .bulk import collect_records, prepare_record
from .preprocess import window_samples
from ..vocabulary import LEADS

CPSC_FS = 500.0
#: column names of the 9-class multi-hot table, in the order of the numeric labels 1–9
CPSC_CLASSES = ("Normal", "AF", "I-AVB", "LBBB", "RBBB", "PAC", "PVC", "STD", "STE")
CPSC_CLASS_NAMES = {
    "Normal": "normal sinus rhythm",
    "AF": "atrial fibrillation",
    "I-AVB": "first-degree atrioventricular block",
    "LBBB": "left bundle branch block",
    "RBBB": "right bundle branch block",
    "PAC": "premature atrial contraction",
    "PVC": "premature ventricular contraction",
    "STD": "ST-segment depression",
    "STE": "ST-segment elevation",
}
_LABEL_COLUMNS = ("First_label", "Second_label", "Third_label")
_UNITS = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3}

__all__ = ["CPSC_FS", "CPSC_CLASSES", "CPSC_CLASS_NAMES", "read_cpsc_mat", "read_cpsc_reference",
           "parse_cpsc_labels", "load_cpsc2018"]


def _scalar(value):
    """The single element of a (possibly nested) MATLAB array, or None when it is empty."""
    arr = np.asarray(value)
    while arr.dtype == object and arr.size == 1:
        arr = np.asarray(arr.reshape(-1)[0])
    if arr.size == 0:
        return None
    return arr.reshape(-1)[0]




def read_cpsc_mat(file: str | os.PathLike, record: str | None = None, units: str = "mV"
                  ) -> tuple[np.ndarray, dict]:
    """Read one CPSC 2018 ``.mat`` file as (samples × 12 float32 mV in :data:`LEADS` order, info).

    ``info`` has ``sex`` (``"Male"``, ``"Female"`` or None) and ``age`` (float, NaN when
    missing). Raises :class:`RecordError` naming the record for a missing or unreadable file, a
    missing ``ECG`` struct or ``data`` field, or data that is not 12 leads × samples.
    """
    file = Path(file)
    name = record or file.stem
    scale = _UNITS.get(units.strip().lower())
    if scale is None:
        raise ValueError(f"units must be mV or uV, not {units!r}")
    if not file.is_file():
        raise RecordError(name, f"signal file {file} is missing")
    try:
        mat = scipy.io.loadmat(str(file))
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError... on a damaged file
        raise RecordError(name, f"{file.name} cannot be read, truncated or damaged? "
                                f"({type(exc).__name__}: {exc})") from exc
    if "ECG" not in mat:
        keys = [k for k in mat if not k.startswith("__")]
        hint = " (a CinC challenge file? use load_cinc2021)" if "val" in keys else ""
        raise RecordError(name, f"{file.name} has no ECG struct (variables: {keys}){hint}")
    try:
        ecg = mat["ECG"][0, 0]
        fields = ecg.dtype.names or ()
    except (IndexError, TypeError, AttributeError) as exc:
        raise RecordError(name, f"{file.name}: ECG is not a 1×1 struct") from exc
    if "data" not in fields:
        raise RecordError(name, f"{file.name}: ECG struct has no data field (fields: {list(fields)})")
    data = np.asarray(ecg["data"])
    if data.ndim != 2 or data.dtype == object:
        raise RecordError(name, f"{file.name}: data has shape {data.shape}, expected 12 × samples")
    if data.shape[0] != len(LEADS):
        raise RecordError(name, f"{file.name}: data has {data.shape[0]} leads (shape {data.shape}), "
                                f"expected {len(LEADS)} × samples")
    if not np.issubdtype(data.dtype, np.number):
        raise RecordError(name, f"{file.name}: data is not numeric ({data.dtype})")
    sig = np.ascontiguousarray(data.T * scale, dtype=np.float32)  # leads already in LEADS order
    info = {
        "sex": parse_sex(_scalar(ecg["sex"])) if "sex" in fields else None,
        "age": parse_age(_scalar(ecg["age"])) if "age" in fields else float("nan"),
    }
    return sig, info


def parse_cpsc_labels(values, record: str = "?") -> list[int]:
    """The class numbers (1–9) of one REFERENCE.csv row, empty cells dropped, duplicates once."""
    out: list[int] = []
    for value in values:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        text = str(value).strip()
        if text == "" or text.lower() == "nan":
            continue
        try:
            number = float(text)
        except ValueError:
            raise RecordError(record, f"label {text!r} is not a CPSC2018 class number (1–9)") from None
        if number != int(number) or not 1 <= int(number) <= len(CPSC_CLASSES):
            raise RecordError(record, f"label {text!r} is not a CPSC2018 class number (1–9)")
        if int(number) not in out:
            out.append(int(number))
    if not out:
        raise RecordError(record, "REFERENCE.csv gives no label")
    return out


def read_cpsc_reference(file: str | os.PathLike) -> pd.DataFrame:
    """``REFERENCE.csv`` as raw strings indexed by ``Recording`` (labels are parsed per record)."""
    file = Path(file)
    ref = pd.read_csv(file, dtype=str, keep_default_na=False)
    ref.columns = [c.strip() for c in ref.columns]
    if "Recording" not in ref.columns:
        raise ValueError(f"{file} has no Recording column (columns: {list(ref.columns)})")
    ref["Recording"] = ref["Recording"].str.strip()
    ref = ref.drop_duplicates("Recording").set_index("Recording")
    for col in _LABEL_COLUMNS:
        if col not in ref.columns:
            ref[col] = ""
    return ref


def load_cpsc2018(path: str | os.PathLike, fs: float | None = None, seconds: float | None = None,
                  n_samples: int | None = None, records=None, strict: bool = False,
                  crop: str = "start", nan: str = "skip", max_gap: int = 10,
                  reference: str | os.PathLike | None = None, units: str = "mV",
                  progress: bool = True, name: str = "cpsc2018", rng=None) -> ECGDataset:
    """Load CPSC 2018 from ``path`` (searched recursively for ``*.mat`` and ``REFERENCE.csv``).

    - ``fs``: resample to this rate on load (polyphase); the source is 500 Hz.
    - ``seconds`` / ``n_samples``: crop or zero-pad every record to this window (at the
      output rate) with ``crop`` (``start``, ``center``, ``end`` or ``random`` with ``rng``);
      without a window, records of different lengths come as a list of arrays.
    - ``records``: restrict to these record names (``A0001``...).
    - ``nan``: ``"skip"`` (a record with NaNs is bad) or ``"fill"`` (interpolate gaps up to
      ``max_gap`` source samples).
    - ``reference``: the label file (default: ``REFERENCE.csv`` found under ``path``); without
      one, every ``.mat`` file is loaded and ``labels`` is None.
    - ``strict``: raise :class:`RecordError` for the first bad record instead of skipping it
      (missing or damaged file, data that is not 12 leads, NaNs, an unparseable label).

    ``labels`` is the 9-class multi-hot table (:data:`CPSC_CLASSES`); ``meta`` has ``sex``,
    ``age``, ``label_numbers``, ``first_label``, ``n_samples_source``, ``seconds_source``, ``file``.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder")
    out_fs = float(fs) if fs is not None else CPSC_FS
    window = window_samples(out_fs, seconds, n_samples)
    files: dict[str, Path] = {}
    for f in sorted(path.rglob("*.mat")):
        files.setdefault(f.stem, f)
    if reference is None:
        found = sorted(path.rglob("REFERENCE.csv"))
        reference = found[0] if found else None
    ref = read_cpsc_reference(reference) if reference is not None else None
    ids = list(ref.index) if ref is not None else sorted(files)
    if records is not None:
        wanted = [str(r) for r in records]
        unknown = [r for r in wanted if r not in set(ids) and r not in files]
        if unknown:
            where = reference if ref is not None else path
            raise KeyError(f"record(s) {unknown[:10]} are not in {where}")
        ids = wanted

    def read_one(rec: str):
        labels = None
        if ref is not None:
            if rec not in ref.index:
                raise RecordError(rec, "not listed in REFERENCE.csv")
            labels = parse_cpsc_labels(ref.loc[rec, list(_LABEL_COLUMNS)].tolist(), rec)
        file = files.get(rec)
        if file is None:
            raise RecordError(rec, f"signal file {rec}.mat is missing under {path}")
        sig, info = read_cpsc_mat(file, rec, units=units)
        n_src = sig.shape[0]
        sig = prepare_record(sig, CPSC_FS, rec, fs=fs, n_samples=window, crop=crop, nan=nan,
                             max_gap=max_gap, rng=rng)
        meta = {**info, "label_numbers": labels,
                "first_label": CPSC_CLASSES[labels[0] - 1] if labels else None,
                "n_samples_source": n_src, "seconds_source": n_src / CPSC_FS, "file": str(file)}
        return sig, meta

    kept, signals, metas, skipped = collect_records(
        ids, read_one, name=name, strict=strict, n_samples=window, progress=progress,
        desc=f"reading {name}", record_name=str)
    meta = pd.DataFrame(metas, index=pd.Index(kept, name="record"),
                        columns=["sex", "age", "label_numbers", "first_label", "n_samples_source",
                                 "seconds_source", "file"])
    labels = None
    if ref is not None:
        y = np.zeros((len(kept), len(CPSC_CLASSES)), dtype=np.int8)
        for i, numbers in enumerate(meta["label_numbers"]):
            for k in numbers:
                y[i, k - 1] = 1
        labels = pd.DataFrame(y, index=meta.index, columns=list(CPSC_CLASSES))
    return ECGDataset(name=name, signals=signals, fs=out_fs, meta=meta, labels=labels,
                      skipped=skipped, leads=LEADS)
