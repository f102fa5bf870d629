"""Read one WFDB record as float32 millivolts in the standard 12-lead order, with checks."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import wfdb

from .errors import RecordError
from ..vocabulary import LEADS

#: other names of standard leads (upper case): Holter / MIT-BIH "modified limb leads"
LEAD_ALIASES = {"MLI": "I", "MLII": "II", "MLIII": "III"}


def standard_lead(name) -> str | None:
    """The standard name in :data:`LEADS` of a lead named ``name`` (any case; MLII → II), or None."""
    upper = str(name).strip().upper()
    upper = LEAD_ALIASES.get(upper, upper)
    return next((lead for lead in LEADS if lead.upper() == upper), None)
_CANONICAL = {name.upper(): name for name in LEADS}
_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3, "nu": 1.0, "": 1.0}


def lead_order(names) -> list[int]:
    """Column indices that put ``names`` (any case, e.g. ``AVR``) in the standard 12-lead order."""
    upper = [str(n).strip().upper() for n in names]
    missing = [lead for lead in LEADS if lead.upper() not in upper]
    if missing:
        raise ValueError(f"leads {missing} are missing (found {list(names)})")
    return [upper.index(lead.upper()) for lead in LEADS]


def standard_columns(names) -> dict[int, int]:
    """{position in :data:`LEADS`: column} for those of ``names`` that are standard leads (any
    case; MIT-BIH's ``MLII`` counts as II, :data:`LEAD_ALIASES`); other names are left out."""
    out: dict[int, int] = {}
    for col, name in enumerate(names):
        lead = standard_lead(name)
        if lead is not None and LEADS.index(lead) not in out:
            out[LEADS.index(lead)] = col
    return out


def read_header(path: str | os.PathLike, record: str | None = None) -> wfdb.Record:
    """The parsed ``.hea`` header of ``path`` (given without extension)."""
    path = Path(path)
    name = record or path.name
    hea = path.with_name(path.name + ".hea")
    if not hea.is_file():
        raise RecordError(name, f"header file {hea} is missing")
    try:
        return wfdb.rdheader(str(path))
    except Exception as exc:  # wfdb raises many kinds of errors on a bad header
        raise RecordError(name, f"header {hea} cannot be parsed ({exc})") from exc


def read_wfdb(
    path: str | os.PathLike,
    fs: float | None = None,
    n_leads: int = 12,
    record: str | None = None,
    allow_nan: bool = False,
    partial: bool = False,
) -> tuple[np.ndarray, float, wfdb.Record]:
    """Read ``path`` (without extension) as (samples × 12 float32 mV, sampling rate, header).

    Raises :class:`RecordError` naming the record for a missing or truncated signal file, a
    header whose rate or lead count disagrees with what is expected, or NaN samples.
    ``partial``: accept any of the 12 standard leads (pass ``n_leads=None``); the missing ones
    are all-NaN columns, signals with other names are left out.
    """
    path = Path(path)
    name = record or path.name
    header = read_header(path, name)
    if fs is not None and abs(float(header.fs) - float(fs)) > 1e-6:
        raise RecordError(name, f"sampling rate is {header.fs:g} Hz, expected {fs:g} Hz")
    if n_leads is not None and header.n_sig != n_leads:
        raise RecordError(name, f"header lists {header.n_sig} signals, expected {n_leads}")
    for fname in sorted(set(header.file_name or [])):
        if not (path.parent / fname).is_file():
            raise RecordError(name, f"signal file {path.parent / fname} is missing")
    _check_size(path, header, name)
    try:
        rec = wfdb.rdrecord(str(path), physical=True)
    except Exception as exc:
        raise RecordError(name, f"signal cannot be read ({type(exc).__name__}: {exc})") from exc
    sig = rec.p_signal
    if sig is None or sig.shape != (header.sig_len, header.n_sig):
        got = None if sig is None else sig.shape
        raise RecordError(name, f"signal is truncated: {got} samples×leads, header says "
                                f"{(header.sig_len, header.n_sig)}")
    scale = np.array([_UNIT_TO_MV.get(str(u).strip().lower(), 1.0) for u in rec.units])
    if partial:
        columns = standard_columns(rec.sig_name)
        out = np.full((sig.shape[0], len(LEADS)), np.nan, dtype=np.float32)
        for pos, col in columns.items():
            out[:, pos] = sig[:, col] * scale[col]
    else:
        try:
            columns = dict(enumerate(lead_order(rec.sig_name)))
        except ValueError as exc:
            raise RecordError(name, str(exc)) from exc
        out = (sig * scale)[:, list(columns.values())].astype(np.float32)
    nan = np.isnan(out[:, list(columns)])
    if not allow_nan and nan.any():
        bad = [LEADS[i] for i in columns if np.isnan(out[:, i]).any()]
        raise RecordError(name, f"{int(nan.sum())} NaN samples in leads {bad}")
    return out, float(header.fs), header


_BYTES_PER_SAMPLE = {"16": 2, "61": 2, "80": 1, "160": 2, "212": 1.5, "24": 3, "32": 4, "310": 4 / 3, "311": 4 / 3}


def _check_size(path: Path, header: wfdb.Record, name: str) -> None:
    """Compare the signal file's size with the header, so a truncated ``.dat`` is named as such."""
    files = header.file_name or []
    if not files or header.sig_len is None:
        return
    groups: dict[str, list[int]] = {}
    for i, fname in enumerate(files):
        groups.setdefault(fname, []).append(i)
    for fname, idx in groups.items():
        fmt = str(header.fmt[idx[0]])
        per = _BYTES_PER_SAMPLE.get(fmt)
        if per is None or not fname.endswith(".dat"):
            continue  # .mat containers and compressed formats: wfdb checks these itself
        offset = (header.byte_offset or [0] * len(files))[idx[0]] or 0
        expected = int(np.ceil(per * len(idx) * header.sig_len)) + offset
        size = (path.parent / fname).stat().st_size
        if size < expected:
            raise RecordError(name, f"signal file {fname} is truncated: {size} bytes, "
                                    f"header needs {expected}")
