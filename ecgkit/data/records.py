"""One ECG record from a file in any of several formats, as samples × 12 standard leads.

Formats: a WFDB record (``.hea``, with or without the extension; CinC ``.mat`` + ``.hea``
included), a CPSC 2018 ``.mat`` (500 Hz), or a samples × leads ``.npy`` / ``.csv`` in mV with a
sampling rate given (and lead names, or a ``.csv`` header row, when not the 12 standard leads in
order). Missing leads are all-NaN columns; a record that cannot be used raises
:class:`~ecgkit.data.errors.RecordError` naming it. ``ecgkit diagnose`` reads its records
with :func:`read_record`.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..vocabulary import sex_code
from .dataset import parse_age
from .errors import RecordError
from .wfdb_io import LEADS, standard_columns, standard_lead

__all__ = ["read_record", "record_name"]


def _known(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _age_sex(comments) -> tuple[float | None, float | None]:
    """Age and sex code (0.0 male, 1.0 female) from a WFDB header's ``Age:``/``Sex:`` comment
    lines; None when absent or not understood."""
    fields = {}
    for line in comments or []:
        key, _, value = str(line).lstrip("#").partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    return _known(parse_age(fields.get("age"))), _known(sex_code(fields.get("sex"), errors="nan"))


def record_name(path) -> str:
    """The record's name: its file name without the extension."""
    path = Path(path)
    return path.stem if path.suffix else path.name


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_table(path: Path, suffix: str, name: str) -> tuple[np.ndarray, list | None]:
    """A .npy or .csv file as a float32 array, with the lead names of a .csv header row (else
    None)."""
    if not path.is_file():
        raise RecordError(name, f"file {path} is missing")
    try:
        if suffix == ".npy":
            return np.asarray(np.load(path, allow_pickle=False), dtype=np.float32), None
        with path.open() as f:
            first = [t.strip() for t in f.readline().split(",")]
        names = None if all(_is_number(t) for t in first) else first
        table = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=int(names is not None))
        return table.astype(np.float32), names
    except Exception as exc:
        raise RecordError(name, f"cannot be read ({type(exc).__name__}: {exc})") from exc


def _as_standard_leads(table: np.ndarray, names, name: str, suffix: str) -> tuple[np.ndarray, list]:
    """(samples × 12 with all-NaN columns for missing leads, the table's lead names)."""
    if table.ndim == 1:
        table = table[:, None]
    n = len(names) if names else len(LEADS)
    if table.ndim != 2 or n not in table.shape:
        if names is None and table.ndim == 2 and min(table.shape) < len(LEADS):
            raise RecordError(name, f"has {min(table.shape)} lead(s) (shape {table.shape}) and a "
                                    f"{suffix} carries no lead names: name them with --leads, "
                                    "e.g. --leads II,V1")
        raise RecordError(name, f"expected samples × {n} leads, got shape {table.shape}")
    if table.shape[1] != n:
        table = table.T
    names = list(names or LEADS)
    signal = np.full((table.shape[0], len(LEADS)), np.nan, dtype=np.float32)
    for pos, col in standard_columns(names).items():
        signal[:, pos] = table[:, col]
    return signal, names


def read_record(path, fs: float | None = None, leads=None) -> tuple[np.ndarray, float, dict]:
    """(samples × 12 float32 mV in standard lead order, sampling rate, info).

    A lead the record lacks (or that is all NaN) is an all-NaN column. ``leads``: names of the
    columns of a .npy/.csv (default: its header row, else the 12 standard leads in order).
    ``info``: name, age, sex, nan_filled, ``leads`` (those present), ``other_signals`` (names
    that are not standard leads, left out), ``rate_from`` (header, --fs or CPSC default) and
    ``warnings`` (missing leads, left-out signals).
    Raises :class:`~ecgkit.data.errors.RecordError` naming the record when it cannot be used.
    """
    from .preprocess import ecg_fill_nan

    path = Path(path)
    name = record_name(path)
    suffix = path.suffix.lower()
    base = path.with_suffix("") if suffix in (".hea", ".dat", ".mat") else path
    rate_from = "--fs"
    if suffix in ("", ".hea", ".dat") or (suffix == ".mat" and base.with_suffix(".hea").is_file()):
        from .cinc2021 import read_cinc_record
        from .wfdb_io import read_header, read_wfdb

        if not base.with_suffix(".hea").is_file():
            raise RecordError(name, f"no WFDB header {base.with_suffix('.hea')}")
        header = read_header(base, name)
        if all(str(f).lower().endswith(".mat") for f in header.file_name or ["?"]):
            signal, rate, _ = read_cinc_record(base, name, header=header)   # CinC challenge
        else:
            signal, rate, _ = read_wfdb(base, None, None, name, allow_nan=True, partial=True)
        names = list(header.sig_name or [])
        age, sex = _age_sex(header.comments)
        rate_from = "header"
    elif suffix == ".mat":
        from .cpsc2018 import CPSC_FS, read_cpsc_mat

        signal, info = read_cpsc_mat(path, name)
        names = list(LEADS)
        rate = float(fs or CPSC_FS)
        rate_from = "--fs" if fs else "CPSC default"
        age = None if info.get("age") is None else _known(info["age"])
        sex = _known(sex_code(info.get("sex"), errors="nan"))
    elif suffix in (".npy", ".csv"):
        if fs is None:
            raise RecordError(name, f"a {suffix} file carries no sampling rate: pass --fs")
        table, header_names = _read_table(path, suffix, name)
        signal, names = _as_standard_leads(table, leads or header_names, name, suffix)
        rate, age, sex = float(fs), None, None
    else:
        raise RecordError(name, f"unsupported format {suffix!r}: use WFDB (.hea), .mat, .npy or .csv")
    if fs is not None and abs(rate - float(fs)) > 1e-6:
        raise RecordError(name, f"sampling rate is {rate:g} Hz, --fs says {fs:g} Hz")
    if signal.shape[0] < 2 * rate:
        raise RecordError(name, f"only {signal.shape[0] / rate:.1f} s of signal; ALFRED needs ≥ 2 s")
    signal = np.array(signal, dtype=np.float32)
    in_file = sorted(standard_columns(names))
    blank = [LEADS[i] for i in in_file if np.isnan(signal[:, i]).all()]
    present = [i for i in in_file if LEADS[i] not in blank]
    other = [str(n) for n in names if standard_lead(n) is None]
    if not present:
        has = (f"its leads {', '.join(blank)} are all NaN" if blank else
               f"none of its signals ({', '.join(other) or 'none'}) is one of the 12 standard "
               f"leads ({', '.join(LEADS)})")
        raise RecordError(name, f"no usable lead: {has}")
    try:
        filled_part, filled = ecg_fill_nan(signal[:, present], leads=[LEADS[i] for i in present])
    except ValueError as exc:
        raise RecordError(name, str(exc)) from exc
    signal[:, present] = filled_part
    warnings = []
    if blank:
        warnings.append(f"lead(s) {', '.join(blank)} all NaN: treated as missing")
    if len(present) < len(LEADS):
        missing = [l for i, l in enumerate(LEADS) if i not in present]
        warnings.append(f"only {len(present)} of the 12 leads ({', '.join(LEADS[i] for i in present)})"
                        f"; missing {', '.join(missing)}: their features, and the rules that need "
                        "them, are undetermined")
    if other:
        warnings.append(f"signal(s) {', '.join(other)} not among the 12 standard lead names: ignored")
    return signal, rate, {"name": name, "age": age, "sex": sex, "nan_filled": int(filled),
                          "leads": [LEADS[i] for i in present], "other_signals": other,
                          "rate_from": rate_from,
                          "warnings": warnings}
