"""Bulk loading shared by the readers: prepare each record, skip and count the bad ones."""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np

from .errors import RecordError, SkipReport
from .preprocess import ecg_fill_nan, ecg_resample, fixed_length
from ..vocabulary import LEADS


def prepare_record(sig: np.ndarray, fs_in: float, record: str, fs: float | None = None,
                   n_samples: int | None = None, crop: str = "start", nan: str = "skip",
                   max_gap: int = 10, rng=None) -> np.ndarray:
    """What every reader does to one samples × 12 record: NaN check, resample, crop/pad.

    ``nan="skip"`` raises :class:`RecordError` on any NaN; ``nan="fill"`` interpolates gaps of
    at most ``max_gap`` samples (at the source rate) and raises for longer ones. The result is
    float32 at ``fs`` (or ``fs_in``), cropped or zero-padded to ``n_samples`` with ``crop``.
    """
    sig = np.asarray(sig, dtype=np.float32)
    if nan not in ("skip", "fill"):
        raise ValueError(f"nan must be 'skip' or 'fill', not {nan!r}")
    if sig.ndim != 2 or sig.shape[1] != len(LEADS):
        raise RecordError(record, f"signal has shape {sig.shape}, expected samples × {len(LEADS)}")
    if sig.shape[0] == 0:
        raise RecordError(record, "signal has no samples")
    bad = np.isnan(sig)
    if bad.any():
        if nan == "skip":
            leads = [LEADS[i] for i in np.flatnonzero(bad.any(axis=0))]
            raise RecordError(record, f"{int(bad.sum())} NaN samples in leads {leads}")
        try:
            sig, _ = ecg_fill_nan(sig, max_gap=max_gap)
        except ValueError as exc:
            raise RecordError(record, f"NaNs cannot be filled: {exc}") from exc
    if not np.isfinite(sig).all():
        raise RecordError(record, "signal holds infinite values")
    if fs is not None and float(fs) != float(fs_in):
        if sig.shape[0] < 2:
            raise RecordError(record, f"{sig.shape[0]} sample(s) cannot be resampled")
        sig = ecg_resample(sig, fs_in, fs)
    if n_samples is not None:
        sig = fixed_length(sig, n_samples, mode=crop, rng=rng)
    return np.ascontiguousarray(sig, dtype=np.float32)


def collect_records(items: Sequence, read_one: Callable, *, name: str, strict: bool = False,
                    n_samples: int | None = None, n_leads: int = len(LEADS), progress: bool = True,
                    desc: str | None = None, record_name: Callable | None = None):
    """Run ``read_one(item) -> (samples × leads array, meta dict)`` over ``items``.

    A :class:`RecordError` skips the record (counted in the returned :class:`SkipReport` and
    warned about once at the end), or is raised with ``strict=True``. With ``n_samples`` the
    signals go straight into one preallocated records × n_samples × leads float32 array;
    without it they are stacked when all lengths agree and returned as a list otherwise.

    Returns ``(kept items, signals, list of meta dicts, SkipReport)``.
    """
    from tqdm import tqdm

    skipped = SkipReport()
    kept, metas, sigs = [], [], []
    buf = np.empty((len(items), n_samples, n_leads), dtype=np.float32) if n_samples else None
    for item in tqdm(items, desc=desc or f"reading {name}", disable=not progress, mininterval=1.0):
        try:
            sig, meta = read_one(item)
        except RecordError as err:
            if strict:
                raise
            skipped.add(record_name(item) if record_name else err.record, err.problem)
            continue
        if buf is not None:
            buf[len(kept)] = sig
        else:
            sigs.append(sig)
        kept.append(item)
        metas.append(meta)
    if buf is not None:
        signals = buf[: len(kept)] if len(kept) < len(items) else buf
    elif sigs and len({s.shape for s in sigs}) == 1:
        signals = np.stack(sigs)
    elif sigs:
        signals = sigs
    else:
        signals = np.zeros((0, 0, n_leads), dtype=np.float32)
    if len(skipped):
        warnings.warn(f"{name}: {skipped.summary()}", stacklevel=3)
    return kept, signals, metas, skipped
