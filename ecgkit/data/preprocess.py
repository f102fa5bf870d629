"""Signal preprocessing with plain, neurokit2-style names: arrays in, arrays out.

Signals are ``samples × leads`` (one record) or ``records × samples × leads`` (a batch); a 1-D
array is one lead. Time is axis 0 for 1-D and 2-D input and axis 1 for 3-D input unless
``axis`` says otherwise. Floating input keeps its dtype (float32 stays float32); integer input
comes back as float32. Filtering is done in float64 internally.

The end of the module holds the per-record pipeline the dataset readers share
(:func:`prepare_record`, :func:`collect_records`): resample, check or fill NaNs, crop or pad,
and skip-or-raise bookkeeping for bulk loads.
"""
from __future__ import annotations

import math
import warnings
from fractions import Fraction
from typing import Iterable, Sequence

import numpy as np
from scipy import signal as sps

from ..vocabulary import LEADS

__all__ = [
    "ecg_bandpass",
    "ecg_remove_baseline",
    "ecg_notch",
    "ecg_resample",
    "resample_length",
    "fixed_length",
    "window_samples",
    "LeadStandardizer",
    "ecg_fill_nan",
]


# --------------------------------------------------------------------------- helpers

_CHUNK_VALUES = 4_000_000  # values per chunk when filtering or resampling a batch of records

def _time_axis(x: np.ndarray, axis: int | None) -> int:
    if axis is not None:
        return axis if axis >= 0 else x.ndim + axis
    return 1 if x.ndim == 3 else 0


def _out_dtype(x: np.ndarray):
    return x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float32)


def _check_fs(fs, what: str = "fs") -> float:
    try:
        value = float(fs)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a positive number of Hz, got {fs!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive number of Hz, got {fs!r}")
    return value


def _padlen(n: int, fs: float, lowest: float | None, sos: np.ndarray) -> int:
    """Pad by about one period of the lowest cutoff (less for short signals) to tame edges."""
    default = 3 * (2 * len(sos) + 1)
    want = default if not lowest else max(default, int(round(fs / lowest)))
    return max(0, min(want, n - 1))


def _by_records(fn, x: np.ndarray, ax: int, n_out: int) -> np.ndarray:
    """Apply ``fn`` (float64 in, float64 out, along ``ax``) to a batch a few records at a time,
    so a large (memory-mapped) records × samples × leads array is never copied to float64 whole."""
    dtype = _out_dtype(x)
    if x.ndim != 3 or ax == 0 or x.shape[0] <= 1:
        return fn(np.asarray(x, dtype=np.float64)).astype(dtype, copy=False)
    shape = list(x.shape)
    shape[ax] = n_out
    out = np.empty(shape, dtype=dtype)
    step = max(1, int(_CHUNK_VALUES // max(1, int(np.prod(x.shape[1:])))))
    for i in range(0, x.shape[0], step):
        out[i:i + step] = fn(np.asarray(x[i:i + step], dtype=np.float64))
    return out


def _sosfiltfilt(x: np.ndarray, sos: np.ndarray, fs: float, lowest: float | None, axis: int | None) -> np.ndarray:
    x = np.asarray(x) if not isinstance(x, np.ndarray) else x
    ax = _time_axis(x, axis)
    n = x.shape[ax]
    if n < 2:
        raise ValueError(f"cannot filter a signal of {n} sample(s)")
    padlen = _padlen(n, fs, lowest, sos)
    return _by_records(lambda a: sps.sosfiltfilt(sos, a, axis=ax, padlen=padlen), x, ax, n)


# --------------------------------------------------------------------------- filters

def ecg_bandpass(x, fs: float, low: float | None = 0.5, high: float | None = 40.0, order: int = 4,
                 axis: int | None = None) -> np.ndarray:
    """Zero-phase Butterworth band-pass (``sosfiltfilt``) along the time axis.

    ``low=None`` gives a low-pass at ``high`` and ``high=None`` a high-pass at ``low``.
    Forward-backward filtering doubles the effective order (``order`` 4 → 8) and keeps
    the waveform in place (no phase delay).
    """
    fs = _check_fs(fs)
    nyq = fs / 2
    if low is not None and not 0 < low < nyq:
        raise ValueError(f"low cutoff {low} Hz must be between 0 and Nyquist ({nyq:g} Hz)")
    if high is not None and not 0 < high < nyq:
        raise ValueError(f"high cutoff {high} Hz must be between 0 and Nyquist ({nyq:g} Hz) at fs={fs:g}")
    if low is not None and high is not None and low >= high:
        raise ValueError(f"low cutoff {low} Hz must be below the high cutoff {high} Hz")
    if low is None and high is None:
        return np.array(x, dtype=_out_dtype(np.asarray(x)), copy=True)
    if low is None:
        sos = sps.butter(order, high, btype="lowpass", fs=fs, output="sos")
    elif high is None:
        sos = sps.butter(order, low, btype="highpass", fs=fs, output="sos")
    else:
        sos = sps.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    return _sosfiltfilt(x, sos, fs, low, axis)


def ecg_remove_baseline(x, fs: float, cutoff: float = 0.5, order: int = 2, axis: int | None = None) -> np.ndarray:
    """Remove baseline wander with a zero-phase Butterworth high-pass at ``cutoff`` Hz."""
    return ecg_bandpass(x, fs, low=cutoff, high=None, order=order, axis=axis)


def ecg_notch(x, fs: float, freq: float = 50.0, quality: float = 30.0, harmonics: bool = False,
              axis: int | None = None) -> np.ndarray:
    """Zero-phase IIR notch at the mains frequency ``freq`` (50 or 60 Hz).

    ``quality`` is the notch's Q (bandwidth = freq / Q); ``harmonics=True`` also removes the
    multiples of ``freq`` below Nyquist.
    """
    fs = _check_fs(fs)
    nyq = fs / 2
    if not 0 < freq < nyq:
        raise ValueError(f"notch frequency {freq} Hz must be between 0 and Nyquist ({nyq:g} Hz)")
    freqs = [freq * k for k in range(1, int(nyq // freq) + 1) if freq * k < nyq] if harmonics else [freq]
    sos = np.vstack([sps.tf2sos(*sps.iirnotch(f, quality, fs=fs)) for f in freqs])
    return _sosfiltfilt(x, sos, fs, None, axis)


# --------------------------------------------------------------------------- resampling

def _ratio(fs_in: float, fs_out: float) -> Fraction:
    ratio = Fraction(str(fs_out)) / Fraction(str(fs_in))
    return ratio.limit_denominator(10_000)


def resample_length(n: int, fs_in: float, fs_out: float) -> int:
    """The number of samples :func:`ecg_resample` returns for ``n`` input samples."""
    fs_in, fs_out = _check_fs(fs_in, "fs_in"), _check_fs(fs_out, "fs_out")
    r = _ratio(fs_in, fs_out)
    return int(math.ceil(n * r.numerator / r.denominator))


def ecg_resample(x, fs_in: float, fs_out: float, axis: int | None = None) -> np.ndarray:
    """Polyphase resampling (``resample_poly`` with the rational factor ``fs_out / fs_in``).

    The factor is exact for integer and decimal rates (500 → 100 is 1/5, 257 → 500 is
    500/257); ``resample_poly`` applies its own anti-aliasing low-pass. The output has
    ``ceil(n · fs_out / fs_in)`` samples. Edges are padded by line extrapolation, so a DC
    offset does not ring at the ends.
    """
    fs_in, fs_out = _check_fs(fs_in, "fs_in"), _check_fs(fs_out, "fs_out")
    x = np.asarray(x) if not isinstance(x, np.ndarray) else x
    dtype = _out_dtype(x)
    if fs_in == fs_out:
        return np.array(x, dtype=dtype, copy=True)
    ax = _time_axis(x, axis)
    r = _ratio(fs_in, fs_out)
    n_out = resample_length(x.shape[ax], fs_in, fs_out)
    return _by_records(lambda a: sps.resample_poly(a, r.numerator, r.denominator, axis=ax, padtype="line"),
                       x, ax, n_out)


# --------------------------------------------------------------------------- windows

def window_samples(fs: float, seconds: float | None = None, n_samples: int | None = None) -> int | None:
    """``n_samples`` or ``round(seconds · fs)`` (``None`` when neither is given)."""
    if seconds is not None and n_samples is not None:
        raise ValueError("give either seconds or n_samples, not both")
    if n_samples is not None:
        n = int(n_samples)
        if n <= 0 or n != n_samples:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        return n
    if seconds is not None:
        if not seconds > 0:
            raise ValueError(f"seconds must be positive, got {seconds!r}")
        return int(round(float(seconds) * _check_fs(fs)))
    return None


def fixed_length(x, n_samples: int, mode: str = "center", pad_value: float = 0.0, rng=None,
                 axis: int | None = None) -> np.ndarray:
    """Crop or pad ``x`` (samples × leads, or 1-D) to exactly ``n_samples`` along time.

    ``mode``: ``"center"`` keeps the middle (pads equally on both sides, the extra sample
    after), ``"start"`` keeps the beginning (pads at the end), ``"end"`` keeps the end (pads at
    the start), ``"random"`` picks a random offset from ``rng`` (a ``numpy`` Generator, a seed,
    or ``None`` for fresh entropy). Padding uses ``pad_value``.
    """
    x = np.asarray(x)
    n_samples = int(n_samples)
    if n_samples <= 0:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    if mode not in ("center", "start", "end", "random"):
        raise ValueError(f"unknown mode {mode!r}; choose center, start, end or random")
    ax = _time_axis(x, axis)
    n = x.shape[ax]
    if n == n_samples:
        return x.copy()
    diff = abs(n - n_samples)
    if mode == "center":
        offset = diff // 2
    elif mode == "start":
        offset = 0
    elif mode == "end":
        offset = diff
    else:
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        offset = int(gen.integers(0, diff + 1))
    if n > n_samples:
        index = [slice(None)] * x.ndim
        index[ax] = slice(offset, offset + n_samples)
        return x[tuple(index)].copy()
    pad = [(0, 0)] * x.ndim
    pad[ax] = (offset, diff - offset)
    return np.pad(x, pad, mode="constant", constant_values=pad_value)


# --------------------------------------------------------------------------- standardization

def _lead_name(i: int, n_leads: int, leads: Sequence[str] | None) -> str:
    if leads is not None and len(leads) == n_leads:
        return str(leads[i])
    return f"lead {i}"


class LeadStandardizer:
    """Per-lead z-scoring whose statistics come from the training split only.

    ``fit`` takes the training signals (records × samples × leads, samples × leads, or a list
    of samples × leads arrays of any lengths) and computes each lead's mean and standard
    deviation ignoring NaNs; ``transform`` applies them to any split without refitting.
    Standard deviations below ``min_std`` are raised to it, so a flat lead gives zeros
    instead of a division by zero. ``to_dict``/``from_dict`` save and restore the fit.
    """

    def __init__(self, min_std: float = 1e-6, leads: Sequence[str] | None = LEADS):
        if not min_std > 0:
            raise ValueError(f"min_std must be positive, got {min_std}")
        self.min_std = float(min_std)
        self.leads = tuple(leads) if leads is not None else None
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None
        self.count_: np.ndarray | None = None

    @property
    def fitted(self) -> bool:
        return self.mean_ is not None

    @staticmethod
    def _chunks(signals) -> Iterable[np.ndarray]:
        if isinstance(signals, (list, tuple)):
            for s in signals:
                s = np.asarray(s)
                yield s.reshape(-1, s.shape[-1]) if s.ndim > 1 else s.reshape(-1, 1)
            return
        arr = np.asarray(signals) if not isinstance(signals, np.ndarray) else signals
        if arr.ndim == 1:
            yield arr.reshape(-1, 1)
        elif arr.ndim == 2:
            yield arr
        else:  # records × samples × leads, possibly a memmap: a few records at a time
            step = max(1, int(2_000_000 // max(1, arr.shape[1] * arr.shape[-1])))
            for i in range(0, arr.shape[0], step):
                part = np.asarray(arr[i:i + step])
                yield part.reshape(-1, part.shape[-1])

    def fit(self, train_signals) -> "LeadStandardizer":
        """Fit per-lead mean and std (NaN-aware) on ``train_signals``; returns ``self``."""
        count = total = m2 = None
        mean = None
        for chunk in self._chunks(train_signals):
            chunk = chunk.astype(np.float64, copy=False)
            if count is None:
                n_leads = chunk.shape[1]
                count = np.zeros(n_leads)
                mean = np.zeros(n_leads)
                m2 = np.zeros(n_leads)
            elif chunk.shape[1] != len(count):
                raise ValueError(f"records have {chunk.shape[1]} and {len(count)} leads")
            n_b = np.sum(~np.isnan(chunk), axis=0).astype(np.float64)
            if not n_b.any():
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean_b = np.where(n_b > 0, np.nanmean(chunk, axis=0), 0.0)
                m2_b = np.where(n_b > 0, np.nansum((chunk - mean_b) ** 2, axis=0), 0.0)
            # Chan et al.: combine the running (count, mean, M2) with this chunk's
            total = count + n_b
            safe = np.where(total > 0, total, 1)
            delta = mean_b - mean
            mean = mean + delta * n_b / safe
            m2 = m2 + m2_b + delta ** 2 * count * n_b / safe
            count = total
        if count is None:
            raise ValueError("cannot fit a standardizer on no signals")
        empty = np.flatnonzero(count == 0)
        if len(empty):
            names = [_lead_name(i, len(count), self.leads) for i in empty]
            raise ValueError(f"leads {names} have no finite sample in the training signals")
        self.mean_ = mean
        self.std_ = np.maximum(np.sqrt(m2 / count), self.min_std)
        self.count_ = count
        return self

    def _check(self, x: np.ndarray) -> None:
        if not self.fitted:
            raise RuntimeError("LeadStandardizer is not fitted: call fit(train_signals) first")
        if x.shape[-1] != len(self.mean_):
            raise ValueError(f"signal has {x.shape[-1]} leads, the standardizer was fitted on {len(self.mean_)}")

    def transform(self, signals):
        """``(x - mean) / std`` per lead with the fitted statistics (never refits)."""
        if isinstance(signals, (list, tuple)):
            return [self.transform(s) for s in signals]
        x = np.asarray(signals)
        self._check(x)
        dtype = _out_dtype(x)  # float32 in, float32 arithmetic: no float64 copy of a big batch
        return ((x - self.mean_.astype(dtype)) / self.std_.astype(dtype)).astype(dtype, copy=False)

    def inverse_transform(self, signals):
        if isinstance(signals, (list, tuple)):
            return [self.inverse_transform(s) for s in signals]
        x = np.asarray(signals)
        self._check(x)
        dtype = _out_dtype(x)
        return (x * self.std_.astype(dtype) + self.mean_.astype(dtype)).astype(dtype, copy=False)

    def fit_transform(self, train_signals):
        return self.fit(train_signals).transform(train_signals)

    def to_dict(self) -> dict:
        """JSON-ready parameters (lists of floats)."""
        if not self.fitted:
            raise RuntimeError("LeadStandardizer is not fitted")
        return {"mean": self.mean_.tolist(), "std": self.std_.tolist(), "count": self.count_.tolist(),
                "min_std": self.min_std, "leads": list(self.leads) if self.leads is not None else None}

    @classmethod
    def from_dict(cls, params: dict) -> "LeadStandardizer":
        obj = cls(min_std=params.get("min_std", 1e-6), leads=params.get("leads"))
        obj.mean_ = np.asarray(params["mean"], dtype=np.float64)
        obj.std_ = np.maximum(np.asarray(params["std"], dtype=np.float64), obj.min_std)
        if obj.mean_.shape != obj.std_.shape:
            raise ValueError("mean and std have different lengths")
        count = params.get("count")
        obj.count_ = np.asarray(count, dtype=np.float64) if count is not None else None
        return obj

    def __repr__(self) -> str:
        if not self.fitted:
            return "LeadStandardizer(unfitted)"
        return f"LeadStandardizer({len(self.mean_)} leads, min_std={self.min_std:g})"


# --------------------------------------------------------------------------- NaN gaps

def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a 1-D boolean array."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2], edges[1::2]))


def ecg_fill_nan(x, max_gap: int = 10, leads: Sequence[str] | None = LEADS) -> tuple[np.ndarray, int]:
    """Fill short NaN gaps of each lead by linear interpolation.

    Returns ``(filled copy, number of samples filled)``. Gaps at the start or end are filled
    with the nearest valid value. Raises ``ValueError`` naming the lead when a lead is all
    NaN or has a gap longer than ``max_gap`` samples (such a record is not worth rescuing).
    ``x`` is samples × leads or 1-D.
    """
    x = np.asarray(x)
    if x.ndim not in (1, 2):
        raise ValueError(f"ecg_fill_nan takes samples × leads or 1-D, got shape {x.shape}")
    out = x.astype(_out_dtype(x), copy=True)
    two_d = out if out.ndim == 2 else out[:, None]
    n, n_leads = two_d.shape
    filled = 0
    nan = np.isnan(two_d)
    if not nan.any():
        return out, 0
    t = np.arange(n)
    for j in range(n_leads):
        miss = nan[:, j]
        if not miss.any():
            continue
        name = _lead_name(j, n_leads, leads)
        if miss.all():
            raise ValueError(f"{name} is all NaN ({n} samples)")
        longest = max(stop - start for start, stop in _runs(miss))
        if longest > max_gap:
            raise ValueError(f"{name} has a NaN gap of {longest} samples (max_gap={max_gap})")
        two_d[miss, j] = np.interp(t[miss], t[~miss], two_d[~miss, j].astype(np.float64))
        filled += int(miss.sum())
    return out, filled

