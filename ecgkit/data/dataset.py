"""The one container every reader returns."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..vocabulary import LEADS, sex_code
from .errors import SkipReport


def parse_sex(value) -> str | None:
    """"Male", "Female" or None (unknown or not understood) for a record's own header; an
    :class:`ECGDataset`'s ``meta`` holds the code (:func:`ecgkit.vocabulary.sex_code`)."""
    return {0.0: "Male", 1.0: "Female"}.get(sex_code(value, errors="nan"))


def _sex_codes(meta: pd.DataFrame, name: str) -> pd.DataFrame:
    """``meta`` with ``sex`` as 0.0 male / 1.0 female / NaN unknown (a value not understood is NaN,
    with a warning naming its records)."""
    if "sex" not in meta.columns:
        return meta
    sex = meta["sex"]
    if pd.api.types.is_float_dtype(sex) and (sex.isna() | sex.isin([0.0, 1.0])).all():
        return meta
    codes, bad = [], {}
    for rec, value in meta["sex"].items():
        try:
            codes.append(sex_code(value))
        except ValueError:
            codes.append(np.nan)
            bad.setdefault(repr(value), []).append(rec)
    if bad:
        warnings.warn(f"{name}: sex not understood, set to unknown: "
                      + "; ".join(f"{v} in {recs[:5]}" for v, recs in bad.items()), stacklevel=3)
    meta = meta.copy()
    meta["sex"] = np.asarray(codes, dtype=float)
    return meta


def parse_age(value) -> float:
    """Age in years, NaN when missing, unparseable or negative."""
    try:
        age = float(str(value).strip())
    except (TypeError, ValueError):
        return float("nan")
    return age if np.isfinite(age) and age >= 0 else float("nan")


@dataclass
class ECGDataset:
    """Signals with their table.

    ``signals``: records × samples × 12 float32 mV in :data:`LEADS` order (possibly a read-only
    memmap), or a list of samples × 12 arrays when lengths differ and no window was asked for.
    ``meta``: one row per record, in the order of ``signals``, indexed by the record id; its ``sex``
    column, when present, is coded once here: 0.0 male, 1.0 female, NaN unknown.
    ``labels``: a multi-hot table (records × classes) aligned with ``meta``, when the source has labels.
    ``skipped``: the records that could not be read, with the reason.
    """

    name: str
    signals: np.ndarray | list
    fs: float
    meta: pd.DataFrame
    labels: pd.DataFrame | None = None
    skipped: SkipReport = field(default_factory=SkipReport)
    leads: tuple[str, ...] = LEADS

    def __post_init__(self):
        self.meta = _sex_codes(self.meta, self.name)

    def __len__(self) -> int:
        return len(self.meta)

    def __repr__(self) -> str:
        shape = getattr(self.signals, "shape", f"{len(self.signals)} records")
        return (f"ECGDataset({self.name!r}, signals={shape}, fs={self.fs:g} Hz, "
                f"skipped={len(self.skipped)})")
