"""The one container every reader returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .errors import SkipReport

_SEX = {"male": "Male", "m": "Male", "female": "Female", "f": "Female"}


def parse_sex(value) -> str | None:
    """"Male", "Female" or None (unknown) from the spellings datasets use."""
    return _SEX.get(str(value).strip().lower()) if value is not None else None


def parse_age(value) -> float:
    """Age in years, NaN when missing, unparseable or negative."""
    try:
        age = float(str(value).strip())
    except (TypeError, ValueError):
        return float("nan")
    return age if np.isfinite(age) and age >= 0 else float("nan")
from .wfdb_io import LEADS


@dataclass
class ECGDataset:
    """Signals with their table.

    ``signals``: records × samples × 12 float32 mV in :data:`LEADS` order (possibly a read-only
    memmap), or a list of samples × 12 arrays when lengths differ and no window was asked for.
    ``meta``: one row per record, in the order of ``signals``, indexed by the record id.
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

    def __len__(self) -> int:
        return len(self.meta)

    def __repr__(self) -> str:
        shape = getattr(self.signals, "shape", f"{len(self.signals)} records")
        return (f"ECGDataset({self.name!r}, signals={shape}, fs={self.fs:g} Hz, "
                f"skipped={len(self.skipped)})")
